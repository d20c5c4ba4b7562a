"""Host sampling: proc files under a fake root, psutil on the live machine."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ishowttsd.hw.sysfs import Sysfs
from ishowttsd.hw.system import (
    ProcSystemSampler,
    PsutilSystemSampler,
    busy_percent,
    parse_cpu_jiffies,
    parse_meminfo,
    system_sampler_for,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"
KIB = 1024


@pytest.fixture
def orin_root(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "agx_orin", tmp_path / "root"))


def test_parse_meminfo_converts_kb_and_keeps_counts() -> None:
    parsed = parse_meminfo("MemTotal:  100 kB\nHugePages_Total:   7\nbroken line\n")
    assert parsed == {"MemTotal": 100 * KIB, "HugePages_Total": 7}


def test_cpu_percent_from_jiffy_deltas() -> None:
    before = parse_cpu_jiffies("cpu  100 0 100 700 100 0 0 0 0 0\n")
    after = parse_cpu_jiffies("cpu  150 0 150 750 150 0 0 0 0 0\n")
    assert before == (200, 1000) and after == (300, 1200)
    assert busy_percent(before, after) == pytest.approx(50.0)
    assert busy_percent(after, after) == 0.0


def test_proc_sampler_reads_the_fake_board(orin_root: Path) -> None:
    sample = ProcSystemSampler(Sysfs(orin_root)).sample()
    assert not sample.partial and sample.missing == {}
    assert sample.memory_total_bytes == 63426548 * KIB
    assert sample.memory_used_bytes == (63426548 - 58234512) * KIB
    assert sample.swap_total_bytes == 31713268 * KIB and sample.swap_used_bytes == 0
    assert sample.load_average == (0.52, 0.61, 0.58)
    assert sample.cpu_percent is not None and 0.0 < sample.cpu_percent < 100.0


def test_proc_sampler_cpu_percent_measures_since_previous_call(orin_root: Path) -> None:
    sampler = ProcSystemSampler(Sysfs(orin_root))
    sampler.sample()
    stat = orin_root / "proc/stat"
    stat.write_text(stat.read_text().replace("cpu  1834522 2210 612245 48812345",
                                             "cpu  1834622 2210 612245 48812445", 1))
    assert sampler.sample().cpu_percent == pytest.approx(50.0)


def test_proc_sampler_degrades_with_reasons(orin_root: Path) -> None:
    (orin_root / "proc/meminfo").unlink()
    (orin_root / "proc/loadavg").write_text("garbage\n")
    sample = ProcSystemSampler(Sysfs(orin_root)).sample()
    assert sample.partial
    assert sample.memory_total_bytes is None and sample.load_average is None
    assert set(sample.missing) == {"memory", "load_average"}
    assert "No such file" in sample.missing["memory"]
    assert sample.cpu_percent is not None


def test_psutil_sampler_reads_the_live_machine() -> None:
    sample = PsutilSystemSampler().sample()
    assert sample.missing == {}
    assert sample.memory_total_bytes and 0 < sample.memory_used_bytes <= sample.memory_total_bytes
    assert sample.load_average is not None and len(sample.load_average) == 3
    assert sample.cpu_percent is not None and 0.0 <= sample.cpu_percent <= 100.0


def test_sampler_choice_follows_the_root(orin_root: Path) -> None:
    assert isinstance(system_sampler_for(Sysfs(Path("/"))), PsutilSystemSampler)
    assert isinstance(system_sampler_for(Sysfs(orin_root)), ProcSystemSampler)
