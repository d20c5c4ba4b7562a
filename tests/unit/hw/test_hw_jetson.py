"""JetsonBackend on copies of the fake boards, with the fake nvpmodel/jetson_clocks scripts
(tests/fixtures/bin) run as real processes, or with no tools (devfreq fallback).

`Board.kernel_follows()` plays the devfreq core: after min/max change, cur_freq moves into the
new range. Permission denial is real: the test drops its effective uid to nobody (see
test_hw_sysfs.py) on a tree in a world-traversable temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from ishowttsd.hw.base import HardwareUnavailable, SystemSample
from ishowttsd.hw.command import CommandRunner
from ishowttsd.hw.jetson import JetsonBackend
from ishowttsd.hw.jetson_sysfs import find_gpu_devfreq
from ishowttsd.hw.sysfs import Sysfs

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
MODES = {"agx_orin": "0:MAXN:1300500000 1:MODE_15W:420750000 2:MODE_30W:624750000 3:MODE_50W:828750000",
         "xavier": "0:MAXN:1377000000 1:MODE_10W:520000000 2:MODE_15W:670000000 3:MODE_30W_ALL:900000000"}
NOBODY = 65534


@dataclass
class Board:
    root: Path
    node: str
    state_dir: Path
    fake_state: Path
    runner: CommandRunner

    def knob(self, name: str) -> int:
        return int((self.root / self.node / name).read_text().split()[0])

    def set_knob(self, name: str, value: int) -> None:
        (self.root / self.node / name).write_text(f"{value}\n")

    def kernel_follows(self) -> None:
        low, high = self.knob("min_freq"), self.knob("max_freq")
        self.set_knob("cur_freq", min(max(self.knob("cur_freq"), low), high))

    def calls(self) -> list[str]:
        log = self.fake_state / "calls.log"
        return log.read_text().splitlines() if log.exists() else []

    def backend(self, nvpmodel_mode: int = 0) -> JetsonBackend:
        return JetsonBackend(Sysfs(self.root), self.runner, self.state_dir, nvpmodel_mode,
                             system=StaticSystem())


class StaticSystem:
    def sample(self) -> SystemSample:
        return SystemSample(load_average=(0.1, 0.2, 0.3))


def make_board(base: Path, board: str, tools: bool, initial_mode: int = 0) -> Board:
    root = Path(shutil.copytree(FIXTURES / "sysfs" / board, base / "root"))
    node = find_gpu_devfreq(Sysfs(root))
    assert node is not None
    bin_dir = Path(shutil.copytree(FIXTURES / "bin", base / "bin"))
    fake_state = base / "fake-state"
    fake_state.mkdir()
    (bin_dir / "fake.env").write_text(f'GPU_NODE="{root / node}"\nFAKE_STATE="{fake_state}"\n'
                                      f'MODES="{MODES[board]}"\nINITIAL_MODE={initial_mode}\n')
    which = partial(shutil.which, path=str(bin_dir)) if tools else (lambda name: None)
    result = Board(root, node, base / "state", fake_state, CommandRunner(10.0, 0, which=which))
    cap = int(MODES[board].split()[initial_mode].split(":")[2])
    result.set_knob("max_freq", cap)
    return result


@pytest.fixture
def orin(tmp_path: Path) -> Board:
    return make_board(tmp_path, "agx_orin", tools=True, initial_mode=2)


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="hw-jetson-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_sample_of_the_orin(orin: Board) -> None:
    backend = orin.backend()
    sample = backend.sample()[0]
    assert backend.devices() == ["jetson:17000000.ga10b"] and sample.device == "jetson:17000000.ga10b"
    assert not sample.partial, sample.missing
    assert sample.utilization_percent == pytest.approx(13.7)
    assert (sample.sm_clock_mhz, sample.sm_clock_max_mhz) == (318.75, 624.75)
    assert (sample.mem_clock_mhz, sample.mem_clock_max_mhz) == (2133.0, 3199.0)
    assert sample.power_w == pytest.approx(9.269568)
    assert (sample.memory_used_bytes, sample.memory_total_bytes) == (805068 * 1024, 63426548 * 1024)
    assert sample.temperatures["GPU-therm"] == 45.531 and len(sample.temperatures) == 9
    assert sample.temperature_thresholds == {"shutdown": 104.5, "slowdown": 99.0}
    assert sample.throttle_reasons == []
    assert backend.system_sample().load_average == (0.1, 0.2, 0.3)
    assert backend.persistence_mode() is None


def test_sample_of_the_xavier_is_partial_without_debugfs(tmp_path: Path) -> None:
    sample = make_board(tmp_path, "xavier", tools=False).backend().sample()[0]
    assert sample.device == "jetson:17000000.gv11b" and sample.partial
    assert set(sample.missing) == {"mem_clock_mhz", "mem_clock_max_mhz"}
    assert "No such file" in sample.missing["mem_clock_mhz"]
    assert sample.power_w == pytest.approx(1.234) and sample.utilization_percent == 0.0
    assert "PMIC-Die" not in sample.temperatures  # constant 100 °C placeholder, skipped
    assert sample.temperatures["Tdiode_tegra"] == 36.25 and len(sample.temperatures) == 7
    assert sample.temperature_thresholds == {"shutdown": 96.5, "slowdown": 91.5}


def test_missing_and_offline_sensors_give_a_partial_sample_with_reasons(orin: Board) -> None:
    (orin.root / orin.node / "device/load").unlink()
    (orin.root / "sys/class/thermal/thermal_zone1/temp").write_text("-256000\n")
    (orin.root / "sys/class/thermal/thermal_zone2/temp").unlink()
    (orin.root / "sys/class/thermal/thermal_zone2/temp").mkdir()
    meminfo = orin.root / "proc/meminfo"
    meminfo.write_text("".join(line for line in meminfo.read_text().splitlines(True) if "NvMap" not in line))
    sample = orin.backend().sample()[0]
    assert sample.partial and sample.utilization_percent is None and sample.memory_used_bytes is None
    assert "No such file" in sample.missing["utilization_percent"]
    assert sample.missing["temperatures.GPU-therm"] == "sensor offline (-256 °C)"
    assert sample.missing["temperatures.CV0-therm"] == "Is a directory"
    assert "NvMapMemUsed" in sample.missing["memory"]
    assert "GPU-therm" not in sample.temperatures and sample.temperatures["CPU-therm"] == 47.281
    assert sample.sm_clock_mhz == 318.75


def test_hot_gpu_reports_thermal_slowdown(orin: Board) -> None:
    (orin.root / "sys/class/thermal/thermal_zone1/temp").write_text("99500\n")
    assert orin.backend().sample()[0].throttle_reasons == ["sw_thermal_slowdown"]


def test_no_gpu_node_is_hardware_unavailable(tmp_path: Path) -> None:
    with pytest.raises(HardwareUnavailable, match="no Jetson GPU devfreq node"):
        JetsonBackend(Sysfs(tmp_path), CommandRunner(1.0, 0), tmp_path / "state", 0)


def test_tools_lock_verify_drift_relock_restore(orin: Board) -> None:
    backend = orin.backend(nvpmodel_mode=0)
    assert backend.verify_clocks().locked is False
    (orin.fake_state / "calls.log").unlink()
    result = backend.lock_clocks()
    assert result.ok, result.message
    assert "jetson_clocks --store: ok; nvpmodel -m 0: ok; jetson_clocks: ok" in result.message
    assert result.applied["target_hz"] == 1300500000
    assert result.applied["jetson_clocks_show"]["gpu"] == {"min_hz": 1300500000, "max_hz": 1300500000,
                                                          "cur_hz": 1300500000}
    store = orin.state_dir / "jetson_clocks.conf"
    assert orin.calls() == ["nvpmodel -q", f"jetson_clocks --store {store}", "nvpmodel -m 0", "jetson_clocks",
                            "jetson_clocks --show"]
    state = backend.verify_clocks()
    assert state.locked is True and state.details["power_mode"] == {"id": 0, "name": "MAXN"}

    orin.set_knob("max_freq", 828750000)  # someone lowers the cap
    orin.kernel_follows()
    drifted = backend.verify_clocks()
    assert drifted.locked is False and "max=828750000" in drifted.reason

    assert backend.lock_clocks().ok
    assert "kept the originals" in backend.lock_clocks().message
    assert sum("--store" in call for call in orin.calls()) == 1
    assert backend.verify_clocks().locked is True

    restored = backend.restore_clocks()
    assert restored.ok, restored.message
    assert (orin.knob("min_freq"), orin.knob("max_freq")) == (114750000, 624750000)
    assert restored.applied == {"min_hz": 114750000, "max_hz": 624750000, "nvpmodel_mode": 2}
    assert orin.calls()[-2:] == [f"jetson_clocks --restore {store}", "nvpmodel -m 2"]
    assert not store.exists() and not (orin.state_dir / "jetson-clock-lock.json").exists()
    assert (orin.fake_state / "nvpmodel_mode").read_text().strip() == "2"


def test_lock_record_written_before_changes_keeps_originals(orin: Board) -> None:
    orin.backend(nvpmodel_mode=0).lock_clocks()
    record = json.loads((orin.state_dir / "jetson-clock-lock.json").read_text())
    assert record["original_min_hz"] == 114750000 and record["original_max_hz"] == 624750000
    assert record["original_mode"] == 2 and record["target_hz"] == 1300500000


def test_configured_power_mode_caps_the_target(orin: Board) -> None:
    backend = orin.backend(nvpmodel_mode=3)
    assert backend.lock_clocks().applied["target_hz"] == 828750000
    state = backend.verify_clocks()
    assert state.locked is True and state.details["target_hz"] == 828750000


def test_wrong_power_mode_fails_verification(orin: Board) -> None:
    backend = orin.backend(nvpmodel_mode=0)
    backend.lock_clocks()
    (orin.fake_state / "nvpmodel_mode").write_text("1\n")
    state = backend.verify_clocks()
    assert state.locked is False and "nvpmodel mode 1 (MODE_15W) != configured 0" in state.reason


def test_mode_minus_one_leaves_nvpmodel_alone(orin: Board) -> None:
    backend = orin.backend(nvpmodel_mode=-1)
    result = backend.lock_clocks()
    assert result.ok and result.applied["target_hz"] == 1300500000
    assert not any(call.startswith("nvpmodel") for call in orin.calls())
    assert "devfreq min_freq=max_freq=1300500000" in result.message  # above the mode cap: enforced
    orin.kernel_follows()
    assert backend.verify_clocks().locked is True


def test_failing_jetson_clocks_falls_back_to_devfreq_writes(orin: Board) -> None:
    (orin.fake_state / "fail_jetson_clocks").touch()
    backend = orin.backend(nvpmodel_mode=0)
    result = backend.lock_clocks()
    assert result.ok and "jetson_clocks: exit 1 fake failure" in result.message
    orin.kernel_follows()
    assert backend.verify_clocks().locked is True
    (orin.fake_state / "fail_jetson_clocks").unlink()
    assert backend.restore_clocks().ok
    assert (orin.knob("min_freq"), orin.knob("max_freq")) == (114750000, 624750000)


def test_stale_store_file_is_replaced_without_a_prompt(orin: Board) -> None:
    orin.state_dir.mkdir()
    (orin.state_dir / "jetson_clocks.conf").write_text("stale\n")
    result = orin.backend().lock_clocks()
    assert "jetson_clocks --store: ok" in result.message
    assert "min_freq:114750000" in (orin.state_dir / "jetson_clocks.conf").read_text()


def test_fallback_without_tools_lock_drift_relock_restore(tmp_path: Path) -> None:
    board = make_board(tmp_path, "xavier", tools=False)
    backend = board.backend(nvpmodel_mode=0)
    result = backend.lock_clocks()
    assert result.ok and "nvpmodel not found" in result.message
    assert "jetson_clocks not found" in result.message
    assert "jetson_clocks_show" not in result.applied
    board.kernel_follows()
    assert backend.verify_clocks().locked is True
    board.set_knob("max_freq", 905250000)
    board.kernel_follows()
    assert backend.verify_clocks().locked is False
    assert backend.lock_clocks().ok
    board.kernel_follows()
    assert backend.verify_clocks().locked is True
    assert backend.restore_clocks().ok
    assert (board.knob("min_freq"), board.knob("max_freq")) == (114750000, 1377000000)
    assert backend.restore_clocks().message == "restore: no lock record, nothing to restore"


def test_devfreq_write_permission_denied_is_a_clear_result(open_dir: Path) -> None:
    board = make_board(open_dir, "xavier", tools=False)
    board.state_dir.mkdir(mode=0o777)
    board.state_dir.chmod(0o777)
    backend = board.backend()
    with unprivileged():
        result = backend.lock_clocks()
        state = backend.verify_clocks()
        restore = backend.restore_clocks()
    assert not restore.ok and restore.permission_denied
    assert not result.ok and result.permission_denied
    assert "Permission denied (clock locking needs root)" in result.message and "min_freq" in result.message
    assert board.knob("min_freq") == 114750000
    assert not (board.state_dir / "jetson-clock-lock.json").exists()  # no side effect before failing
    assert state.locked is False and state.details["target_hz"] == 1377000000


def test_unwritable_state_dir_is_permission_denied(open_dir: Path) -> None:
    board = make_board(open_dir, "xavier", tools=False)
    for knob in ("min_freq", "max_freq"):
        (board.root / board.node / knob).chmod(0o666)
    board.state_dir.mkdir(mode=0o755)
    backend = board.backend()
    with unprivileged():
        result = backend.lock_clocks()
    assert not result.ok and result.permission_denied and board.knob("min_freq") == 114750000
    assert "jetson-clock-lock.json" in result.message


def test_corrupt_record_fails_lock_cleanly_and_verify_uses_highest(orin: Board) -> None:
    orin.state_dir.mkdir()
    (orin.state_dir / "jetson-clock-lock.json").write_text("{broken")
    backend = orin.backend()
    result = backend.lock_clocks()
    assert not result.ok and not result.permission_denied and "unreadable lock record" in result.message
    assert backend.verify_clocks().details["target_hz"] == 1300500000


def test_unreadable_devfreq_verifies_as_unknown_and_cannot_lock(orin: Board) -> None:
    (orin.root / orin.node / "min_freq").unlink()
    backend = orin.backend()
    state = backend.verify_clocks()
    assert state.locked is None and "cannot read GPU devfreq" in state.reason
    result = backend.lock_clocks()
    assert not result.ok and not result.permission_denied and "No such file" in result.message
