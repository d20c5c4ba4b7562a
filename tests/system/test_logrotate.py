"""The packaged logrotate rules, run by the real logrotate on the real paths inside a private
namespace (overlay /etc and /var), with the tmpfiles.d rules creating the directories."""

from __future__ import annotations

import gzip
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import SystemdInstance
from sysboot import InstanceSpec
from sysdaemon import SERVICE_USER, STATE_DIR

from ishowttsd.config import load_config

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
LOG_DIR = "/var/log/ishowttsd"
HISTORY = f"{LOG_DIR}/bench_history.jsonl"
RECORDS = 2500
WRITER = """
import sys, time
path, count = sys.argv[1], int(sys.argv[2])
for n in range(count):
    with open(path, "a") as out:
        out.write('{"n": %d}\\n' % n)
    time.sleep(0.001)
"""


@pytest.fixture
def log_instance() -> Iterator[SystemdInstance]:
    with SystemdInstance(InstanceSpec(units={})) as sd:
        sd.add_system_user(SERVICE_USER, home=STATE_DIR)
        tmpfiles = sd.share(REPO / "systemd" / "ishowttsd-tmpfiles.conf")
        sd.run("systemd-tmpfiles", "--create", str(tmpfiles))
        sd.share(REPO / "logrotate" / "ishowttsd")
        yield sd


def rotate(sd: SystemdInstance) -> None:
    result = sd.run("logrotate", "-s", "/run/harness/logrotate.state", "-f", "/run/harness/share/ishowttsd",
                    check=False)
    assert result.returncode == 0 and not result.stderr, result.stderr


def history_files(sd: SystemdInstance) -> list[Path]:
    return sorted(sd.path(LOG_DIR).glob("bench_history.jsonl*"))


def record_numbers(files: list[Path]) -> Counter[int]:
    numbers: Counter[int] = Counter()
    for path in files:
        data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        numbers.update(int(m) for m in re.findall(rb'"n": (\d+)', data))
    return numbers


def test_rotation_while_the_daemon_writes_keeps_every_record_exactly_once(
        log_instance: SystemdInstance) -> None:
    sd = log_instance
    writer = sd.spawn_as(SERVICE_USER, "/usr/bin/python3", "-c", WRITER, HISTORY, str(RECORDS))
    rotations = 0
    while writer.poll() is None:
        time.sleep(0.3)
        rotate(sd)
        rotations += 1
    rotate(sd)

    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    files = history_files(sd)
    assert rotations >= 3 and any(f.suffix == ".gz" for f in files), [f.name for f in files]
    counts = record_numbers(files)
    assert sorted(counts) == list(range(RECORDS))
    assert {n: c for n, c in counts.items() if c != 1} == {}


def test_rotated_files_are_compressed_owned_by_the_service_and_bounded(
        log_instance: SystemdInstance) -> None:
    sd = log_instance
    for week in range(16):
        sd.run_as(SERVICE_USER, "sh", "-c", f"echo '{{\"n\": {week}}}' >> {HISTORY}")
        rotate(sd)

    names = sorted(f.name for f in history_files(sd))
    assert names == sorted(["bench_history.jsonl.1"] + [f"bench_history.jsonl.{i}.gz" for i in range(2, 14)])
    owners = {sd.run("stat", "-c", "%U:%G", f"{LOG_DIR}/{name}").stdout.strip() for name in names}
    assert owners == {f"{SERVICE_USER}:{SERVICE_USER}"}
    assert record_numbers(history_files(sd)) == Counter(range(3, 16))


def test_empty_or_missing_files_are_left_alone(log_instance: SystemdInstance) -> None:
    sd = log_instance
    rotate(sd)
    sd.run_as(SERVICE_USER, "touch", f"{LOG_DIR}/memory_history.jsonl")
    rotate(sd)
    assert sorted(p.name for p in sd.path(LOG_DIR).iterdir()) == ["memory_history.jsonl"]


def test_retention_matches_the_daemons_artefact_retention() -> None:
    rules = (REPO / "logrotate" / "ishowttsd").read_text()
    days = load_config(REPO / "config" / "ishowttsd.toml").jobs.artefact_retention_days
    directives = dict(re.findall(r"^\s*(rotate|maxage)\s+(\d+)\s*$", rules, re.MULTILINE))
    assert re.search(r"^\s*weekly\s*$", rules, re.MULTILINE)
    assert int(directives["maxage"]) == days
    assert int(directives["rotate"]) * 7 >= days > (int(directives["rotate"]) - 1) * 7
