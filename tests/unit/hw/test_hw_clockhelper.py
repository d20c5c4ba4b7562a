"""The root clock helper: one JSON line, exit codes, --best-effort, config-driven backends."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pynvml
import pytest
from fake_nvml import FakeGpu, FakeNvml

from ishowttsd.hw.clockhelper import RelockFiles, main

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures"


def write_config(tmp_path: Path, backend: str, root: Path, lock: bool = True, mode: int = 0) -> Path:
    config = tmp_path / "ishowttsd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[gpu]\nbackend = "{backend}"\nsysfs_root = "{root}"\n'
                      f'lock_clocks = {str(lock).lower()}\nnvpmodel_mode = {mode}\n'
                      'command_timeout_s = 10.0\ncommand_retries = 0\n')
    return config


def run(argv: list[str], nvml: FakeNvml | None = None) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    no_driver = FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)
    loader = (lambda: nvml) if nvml else (lambda: no_driver)
    status = main(argv, nvml_loader=loader, out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1, lines
    return status, json.loads(lines[0])


@pytest.fixture
def jetson(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Orin fake tree + fake tools on PATH (the helper uses the real PATH lookup)."""
    root = Path(shutil.copytree(FIXTURES / "sysfs" / "agx_orin", tmp_path / "root"))
    bin_dir = Path(shutil.copytree(FIXTURES / "bin", tmp_path / "bin"))
    (tmp_path / "fake").mkdir()
    (bin_dir / "fake.env").write_text(
        f'GPU_NODE="{root}/sys/class/devfreq/17000000.ga10b"\nFAKE_STATE="{tmp_path / "fake"}"\n'
        'MODES="0:MAXN:1300500000 2:MODE_30W:624750000"\nINITIAL_MODE=0\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return write_config(tmp_path, "jetson", root), root


def test_jetson_lock_verify_restore_through_the_helper(jetson: tuple[Path, Path]) -> None:
    config, root = jetson
    status, record = run(["lock", "--config", str(config)])
    assert status == 0 and record["ok"] and record["backend"] == "jetson" and record["action"] == "lock"
    assert record["applied"]["target_hz"] == 1300500000 and record["best_effort"] is False
    status, record = run(["verify", "--config", str(config)])
    assert status == 0 and record["locked"] is True
    status, record = run(["restore", "--config", str(config)])
    assert status == 0 and record["ok"]
    assert (root / "sys/class/devfreq/17000000.ga10b/min_freq").read_text().strip() == "114750000"
    status, record = run(["verify", "--config", str(config)])
    assert status == 3 and record["locked"] is False


def test_sysfs_root_option_overrides_the_config(jetson: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = jetson
    empty = tmp_path / "empty"
    empty.mkdir()
    status, record = run(["lock", "--config", str(config), "--sysfs-root", str(empty)])
    assert status == 2 and "no Jetson GPU devfreq node" in record["error"]


def test_no_gpu_is_not_applicable_and_exit_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path, "auto", tmp_path)
    for action in ("lock", "restore"):
        status, record = run([action, "--config", str(config)])
        assert status == 0 and record["backend"] == "none" and record["not_applicable"]
        assert record["message"] == "no GPU: clock locking not applicable"
    status, record = run(["verify", "--config", str(config)])
    assert status == 0 and record["locked"] is None


def test_lock_clocks_false_touches_nothing(tmp_path: Path) -> None:
    nvml = FakeNvml([FakeGpu()])
    config = write_config(tmp_path, "nvml", tmp_path, lock=False)
    status, record = run(["lock", "--config", str(config)], nvml)
    assert status == 0 and record["not_applicable"] and record["backend"] is None
    assert "lock_clocks = false" in record["message"] and nvml.init_calls == 0


def test_nvml_permission_denied_fails_unless_best_effort(tmp_path: Path) -> None:
    gpu = FakeGpu(errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVML_ERROR_NO_PERMISSION})
    config = write_config(tmp_path, "nvml", tmp_path)
    status, record = run(["lock", "--config", str(config)], FakeNvml([gpu]))
    assert status == 1 and not record["ok"] and record["permission_denied"]
    nvml = FakeNvml([gpu])
    status, record = run(["lock", "--config", str(config), "--best-effort"], nvml)
    assert status == 0 and record["permission_denied"] and record["best_effort"] is True
    assert nvml.shutdown_calls == 1


def test_nvml_lock_and_verify_under_load(tmp_path: Path) -> None:
    gpu = FakeGpu(busy=True)
    config = write_config(tmp_path, "nvml", tmp_path)
    assert run(["lock", "--config", str(config)], FakeNvml([gpu]))[0] == 0 and gpu.locked == (1980, 1980)
    status, record = run(["verify", "--config", str(config)], FakeNvml([gpu]))
    assert status == 0 and record["locked"] is True
    gpu.busy = False
    assert run(["verify", "--config", str(config)], FakeNvml([gpu]))[0] == 3  # idle: cannot confirm


def test_config_errors_exit_two_or_zero_with_best_effort(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpu]\nbackend = 'cuda'\n")
    status, record = run(["lock", "--config", str(bad)])
    assert status == 2 and not record["ok"] and "backend" in record["error"]
    assert run(["lock", "--config", str(bad), "--best-effort"])[0] == 0
    status, record = run(["restore", "--config", str(tmp_path / "missing.toml")])
    assert status == 2 and "cannot read" in record["error"]


def test_runs_as_a_module_and_prints_one_json_line(tmp_path: Path) -> None:
    config = write_config(tmp_path, "none", tmp_path)
    done = subprocess.run([sys.executable, "-m", "ishowttsd.hw.clockhelper", "lock", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["not_applicable"] is True and done.stdout.count("\n") == 1


class ExplodingNvml(FakeNvml):
    def nvmlInit(self) -> None:
        raise RuntimeError("driver exploded")


def test_an_internal_error_is_reported_and_best_effort_still_exits_zero(tmp_path: Path) -> None:
    config = write_config(tmp_path, "nvml", tmp_path)
    status, record = run(["lock", "--config", str(config)], ExplodingNvml([]))
    assert status == 1 and "internal error: RuntimeError('driver exploded')" in record["error"]
    assert run(["lock", "--config", str(config), "--best-effort"], ExplodingNvml([]))[0] == 0


# --- relock: the root side of ishowttsd-relock.path / .service ---------------------------------------
def drift(root: Path) -> None:
    """What a governor or another tool does to a locked Orin GPU: min and cur drop."""
    node = root / "sys/class/devfreq/17000000.ga10b"
    (node / "min_freq").write_text("114750000\n")
    (node / "cur_freq").write_text("306000000\n")


def relock_argv(config: Path, runtime: Path) -> list[str]:
    return ["relock", "--config", str(config), "--runtime-dir", str(runtime)]


def test_relock_answers_the_daemon_request_and_removes_it(jetson: tuple[Path, Path], tmp_path: Path) -> None:
    config, root = jetson
    runtime = tmp_path / "run"
    runtime.mkdir()
    assert run(["lock", "--config", str(config)])[0] == 0
    drift(root)
    request = RelockFiles(runtime).write_request("re-apply after drift: min_hz", 1.0)

    status, record = run(relock_argv(config, runtime))

    assert status == 0 and record["relocked"] is True and record["was_locked"] is False
    assert record["locked"] is True and record["request"] == request and record["backend"] == "jetson"
    assert json.loads((runtime / "relock-result.json").read_text()) == record
    assert (runtime / "relock-result.json").stat().st_mode & 0o777 == 0o644
    assert not (runtime / "relock-request").exists()
    assert (root / "sys/class/devfreq/17000000.ga10b/min_freq").read_text().strip() == "1300500000"
    assert run(["verify", "--config", str(config)])[1]["locked"] is True


def test_relock_of_a_lock_in_force_changes_nothing(jetson: tuple[Path, Path], tmp_path: Path) -> None:
    config, _ = jetson
    assert run(["lock", "--config", str(config)])[0] == 0
    calls = (tmp_path / "fake" / "calls.log").read_text()
    status, record = run(relock_argv(config, tmp_path))
    assert status == 0 and record["relocked"] is False and record["locked"] is True
    assert record["request"] is None and "no re-lock needed" in record["message"]
    new_calls = (tmp_path / "fake" / "calls.log").read_text().removeprefix(calls).splitlines()
    assert set(new_calls) <= {"nvpmodel -q"}  # read back only: nothing was set


def test_relock_that_fails_still_answers_and_removes_the_request(tmp_path: Path) -> None:
    gpu = FakeGpu(errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVML_ERROR_NO_PERMISSION})
    config = write_config(tmp_path, "nvml", tmp_path)
    RelockFiles(tmp_path).write_request("drift", 1.0)
    status, record = run(relock_argv(config, tmp_path), FakeNvml([gpu]))
    assert status == 1 and record["ok"] is False and record["permission_denied"] is True
    assert json.loads((tmp_path / "relock-result.json").read_text())["ok"] is False
    assert not (tmp_path / "relock-request").exists()


def test_relock_with_a_broken_config_answers_with_the_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[gpu]\nbackend = 'cuda'\n")
    RelockFiles(tmp_path).write_request("drift", 1.0)
    status, record = run([*relock_argv(bad, tmp_path), "--best-effort"])
    assert status == 0 and "backend" in record["error"] and record["request"]["reason"] == "drift"
    assert not (tmp_path / "relock-request").exists() and (tmp_path / "relock-result.json").exists()


def test_relock_keeps_a_newer_request_written_while_it_ran(tmp_path: Path) -> None:
    files = RelockFiles(tmp_path)
    first = files.write_request("first", 1.0)
    files.write_request("second", 2.0)
    files.clear_request(first)
    assert files.read_request()["reason"] == "second"  # type: ignore[index]


def test_relock_disabled_or_without_gpu_is_not_applicable(tmp_path: Path) -> None:
    disabled = write_config(tmp_path, "nvml", tmp_path, lock=False)
    status, record = run(relock_argv(disabled, tmp_path), FakeNvml([FakeGpu()]))
    assert status == 0 and record["not_applicable"] and record["backend"] is None
    status, record = run(relock_argv(write_config(tmp_path, "none", tmp_path), tmp_path))
    assert status == 0 and record["relocked"] is False and record["not_applicable"] is True


def test_runtime_dir_defaults_to_the_socket_directory(tmp_path: Path) -> None:
    config = tmp_path / "ishowttsd.toml"
    config.write_text(f'[daemon]\nsocket = "{tmp_path / "sock" / "d.sock"}"\n[gpu]\nbackend = "none"\n')
    (tmp_path / "sock").mkdir()
    assert run(["relock", "--config", str(config)])[0] == 0
    assert (tmp_path / "sock" / "relock-result.json").exists()


def test_garbled_files_read_as_unreadable(tmp_path: Path) -> None:
    files = RelockFiles(tmp_path)
    files.request_path.write_text("{not json")
    files.result_path.write_text("[1]")
    assert "unreadable" in files.read_request()  # type: ignore[operator]
    assert "not a JSON object" in files.read_result()["unreadable"]  # type: ignore[index]
