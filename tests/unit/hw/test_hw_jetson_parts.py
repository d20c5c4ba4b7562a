"""Jetson building blocks: GPU node discovery, thermal/power reads, tool parsers, lock decisions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ishowttsd.hw.jetson_lock import (
    LockRecord,
    LockRecordStore,
    devfreq_writes,
    knobs_at,
    lock_target,
    lock_verdict,
    mode_verdict,
    restored_verdict,
)
from ishowttsd.hw.jetson_sysfs import (
    DevfreqState,
    find_gpu_devfreq,
    gpu_rail_watts,
    read_devfreq,
    thermal_throttle_reasons,
    thermal_zones,
    zone_trips,
)
from ishowttsd.hw.jetson_tools import PowerMode, parse_jetson_clocks_show, parse_nvpmodel_query
from ishowttsd.hw.sysfs import Sysfs, SysfsError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sysfs"
ORIN_SHOW = """SOC family:tegra234  Machine:Jetson AGX Orin
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1651200 IdleStates: WFI=1 c7=1
GPU MinFreq=1300500000 MaxFreq=1300500000 CurrentFreq=1300500000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
FAN Dynamic Speed control=active hwmon3 :pwm1=64
NV Power Mode: MAXN
"""


def copy_board(tmp_path: Path, board: str) -> Sysfs:
    return Sysfs(Path(shutil.copytree(FIXTURES / board, tmp_path / board)))


@pytest.mark.parametrize(("board", "node"), [("agx_orin", "sys/class/devfreq/17000000.ga10b"),
                                             ("xavier", "sys/class/devfreq/17000000.gv11b")])
def test_gpu_devfreq_found_by_of_node_name_past_other_nodes(tmp_path: Path, board: str, node: str) -> None:
    sysfs = copy_board(tmp_path, board)
    assert sysfs.glob("sys/class/devfreq/*")[0].endswith(".vic")
    assert find_gpu_devfreq(sysfs) == node


def test_gpu_devfreq_found_through_an_of_node_symlink(tmp_path: Path) -> None:
    sysfs = copy_board(tmp_path, "agx_orin")
    old = sysfs.path("sys/class/devfreq/17000000.ga10b")
    new = old.with_name("17000000.gpu")  # JetPack 6 naming
    old.rename(new)
    shutil.rmtree(new / "device/of_node")
    (new / "device/of_node").symlink_to("../../../../firmware/devicetree/base/bus@0/gpu@17000000")
    assert find_gpu_devfreq(sysfs) == "sys/class/devfreq/17000000.gpu"


def test_thor_gpc_node_found_by_directory_name_and_no_gpu_gives_none(tmp_path: Path) -> None:
    sysfs = Sysfs(tmp_path)
    (tmp_path / "sys/class/devfreq/15340000.vic/device/of_node").mkdir(parents=True)
    (tmp_path / "sys/class/devfreq/15340000.vic/device/of_node/name").write_text("vic")
    assert find_gpu_devfreq(sysfs) is None
    (tmp_path / "sys/class/devfreq/gpu-gpc-0").mkdir()
    assert find_gpu_devfreq(sysfs) == "sys/class/devfreq/gpu-gpc-0"


def test_read_devfreq_of_the_orin(tmp_path: Path) -> None:
    state = read_devfreq(copy_board(tmp_path, "agx_orin"), "sys/class/devfreq/17000000.ga10b")
    assert (state.min_hz, state.max_hz, state.cur_hz) == (114750000, 1300500000, 318750000)
    assert state.highest_hz == 1300500000 and len(state.available_hz) == 13
    assert state.governor == "nvhost_podgov"


def test_thermal_zones_and_trip_points(tmp_path: Path) -> None:
    sysfs = copy_board(tmp_path, "agx_orin")
    zones = thermal_zones(sysfs)
    assert [zone.type for zone in zones] == ["CPU-therm", "GPU-therm", "CV0-therm", "CV1-therm", "CV2-therm",
                                             "SOC0-therm", "SOC1-therm", "SOC2-therm", "tj-therm"]
    assert zone_trips(sysfs, zones[1]) == {"shutdown": 104.5, "slowdown": 99.0}
    assert zone_trips(sysfs, zones[2]) == {}


def test_thermal_throttle_reason_from_passive_trip() -> None:
    trips = {"GPU-therm": {"slowdown": 99.0, "shutdown": 104.5}}
    assert thermal_throttle_reasons({"GPU-therm": 98.9, "CV0-therm": 120.0}, trips) == []
    assert thermal_throttle_reasons({"GPU-therm": 99.0}, trips) == ["sw_thermal_slowdown"]


def test_gpu_rail_power_for_both_ina3221_driver_layouts(tmp_path: Path) -> None:
    assert gpu_rail_watts(copy_board(tmp_path, "agx_orin")) == pytest.approx(5.016 * 1.848)
    assert gpu_rail_watts(copy_board(tmp_path, "xavier")) == pytest.approx(1.234)
    with pytest.raises(SysfsError, match="no INA3221 rail labelled GPU"):
        gpu_rail_watts(Sysfs(tmp_path / "empty"))


def test_parse_nvpmodel_query_with_warning_and_id() -> None:
    assert parse_nvpmodel_query("NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_30W\n2\n") == \
        PowerMode(2, "MODE_30W")
    assert parse_nvpmodel_query("NV Power Mode: MAXN\n") == PowerMode(None, "MAXN")
    assert parse_nvpmodel_query("NVPM ERROR: failed\n") is None


def test_parse_jetson_clocks_show() -> None:
    assert parse_jetson_clocks_show(ORIN_SHOW) == {
        "gpu": {"min_hz": 1300500000, "max_hz": 1300500000, "cur_hz": 1300500000},
        "emc": {"min_hz": 204000000, "max_hz": 3199000000, "cur_hz": 3199000000},
        "power_mode": "MAXN"}
    assert parse_jetson_clocks_show("Please run as root\n") == {}


def state(min_hz: int, max_hz: int, cur_hz: int) -> DevfreqState:
    return DevfreqState(cur_hz, min_hz, max_hz, (114, 624, 1300), "nvhost_podgov")


def test_devfreq_writes_never_put_min_above_max() -> None:
    assert devfreq_writes(624, 1300, 1300) == [("max_freq", 1300), ("min_freq", 1300)]
    assert devfreq_writes(1300, 1300, 1300) == [("min_freq", 1300), ("max_freq", 1300)]
    assert devfreq_writes(1300, 114, 624) == [("min_freq", 114), ("max_freq", 624)]


def test_lock_target_highest_unless_a_power_mode_caps_lower() -> None:
    assert lock_target(state(114, 624, 114), mode_applied=False) == 1300
    assert lock_target(state(114, 624, 114), mode_applied=True) == 624
    assert lock_target(state(114, 1300, 114), mode_applied=True) == 1300


def test_lock_and_restore_verdicts() -> None:
    assert lock_verdict(state(1300, 1300, 1300), 1300) == (
        True, "GPU devfreq locked: min=1300 max=1300 cur=1300 target=1300 Hz")
    assert lock_verdict(state(1300, 1300, 624), 1300)[0] is False  # cur must follow too
    assert knobs_at(state(1300, 1300, 624), 1300)
    record = LockRecord("node", 114, 624)
    assert restored_verdict(state(114, 624, 300), record)[0] is True
    assert restored_verdict(state(1300, 1300, 1300), record) == (
        False, "GPU devfreq min=1300 max=1300 Hz, originals were (114, 624)")
    assert mode_verdict(True, "r", 0, "MAXN", 0) == (True, "r")
    assert mode_verdict(True, "r", 2, "MODE_30W", 0) == (
        False, "r; nvpmodel mode 2 (MODE_30W) != configured 0")


def test_lock_record_round_trip_and_corruption(tmp_path: Path) -> None:
    store = LockRecordStore(tmp_path / "state")
    assert store.load() is None
    record = LockRecord("sys/class/devfreq/x", 114, 624, target_hz=1300, original_mode=2, store_file="f")
    store.save(record)
    assert store.load() == record
    store.path.write_text("{not json")
    with pytest.raises(ValueError, match="unreadable lock record"):
        store.load()
    store.store_file.write_text("x")
    store.clear()
    assert not store.path.exists() and not store.store_file.exists()
