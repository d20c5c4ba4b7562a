"""Jetson sysfs layout: the GPU devfreq node, thermal zones, INA3221 power rails, NvMap memory.

GPU node discovery follows jetson_stats (jtop/core/gpu.py): walk sys/class/devfreq/* and match
the device-tree node name of `<node>/device/of_node` (the `name` file, NUL-terminated on real
boards; or the symlink target "gpu@17000000" without the unit address) against the integrated
GPU names; Thor has no such node and is matched by its devfreq directory name "gpu-gpc-0".
Frequencies are in Hz, `device/load` is per mille, thermal zone temps are milli-°C.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath

from ishowttsd.hw.sysfs import Sysfs, SysfsError

DEVFREQ_GLOB = "sys/class/devfreq/*"
THERMAL_GLOB = "sys/class/thermal/thermal_zone*"
GPU_OF_NODE_NAMES = frozenset({"ga10b", "gv11b", "gp10b", "gm20b", "gpu"})  # Orin, Xavier, TX2, Nano, JP6
GPU_DEVFREQ_NAMES = frozenset({"gpu-gpc-0"})  # Thor
OFFLINE_MILLI_C = -256000  # value Tegra thermal zones report for an offline sensor
TRIP_NAMES = {"critical": "shutdown", "passive": "slowdown", "hot": "hot"}
GPU_ZONE_PREFIX = "GPU"
# Zones that are not sensors: PMIC-Die reads a constant 100 °C placeholder on Xavier/TX2 (jetson_stats
# skips it too); reporting it would make every "hottest sensor" reading 100 °C.
PLACEHOLDER_ZONE_PREFIXES = ("PMIC",)


def of_node_name(sysfs: Sysfs, node: str) -> str | None:
    """Device-tree node name of a devfreq device, from the name file or the of_node link."""
    try:
        return sysfs.read_text(f"{node}/device/of_node/name")
    except SysfsError:
        pass
    try:
        return sysfs.link_name(f"{node}/device/of_node").split("@")[0]
    except SysfsError:
        return None


def is_gpu_node(sysfs: Sysfs, node: str) -> bool:
    name = PurePosixPath(node).name
    return name in GPU_DEVFREQ_NAMES or of_node_name(sysfs, node) in GPU_OF_NODE_NAMES


def find_gpu_devfreq(sysfs: Sysfs) -> str | None:
    """Root-relative path of the GPU devfreq directory, or None when the board has none."""
    return next((node for node in sysfs.glob(DEVFREQ_GLOB) if is_gpu_node(sysfs, node)), None)


@dataclass(frozen=True)
class DevfreqState:
    cur_hz: int
    min_hz: int
    max_hz: int
    available_hz: tuple[int, ...]
    governor: str

    @property
    def highest_hz(self) -> int:
        return max(self.available_hz) if self.available_hz else self.max_hz


def read_devfreq(sysfs: Sysfs, node: str) -> DevfreqState:
    """All frequency knobs of one devfreq node; raises SysfsError if any is unreadable."""
    return DevfreqState(cur_hz=sysfs.read_int(f"{node}/cur_freq"), min_hz=sysfs.read_int(f"{node}/min_freq"),
                        max_hz=sysfs.read_int(f"{node}/max_freq"),
                        available_hz=tuple(sysfs.read_ints(f"{node}/available_frequencies")),
                        governor=sysfs.read_text(f"{node}/governor"))


def write_devfreq(sysfs: Sysfs, node: str, writes: list[tuple[str, int]]) -> None:
    """Apply (knob, Hz) writes in the given order; raises SysfsError on the first refusal."""
    for knob, value in writes:
        sysfs.write_text(f"{node}/{knob}", str(value))


@dataclass(frozen=True)
class ThermalZone:
    path: str
    type: str


def thermal_zones(sysfs: Sysfs) -> list[ThermalZone]:
    """Readable thermal zones in sysfs order, without placeholder zones (PMIC-Die)."""
    zones = []
    for path in sysfs.glob(THERMAL_GLOB):
        try:
            zones.append(ThermalZone(path, sysfs.read_text(f"{path}/type")))
        except SysfsError:
            continue
    return [zone for zone in zones if not zone.type.startswith(PLACEHOLDER_ZONE_PREFIXES)]


def zone_celsius(sysfs: Sysfs, zone: ThermalZone) -> float:
    """Temperature in °C; an offline sensor (-256 °C) raises SysfsError like an unreadable one."""
    milli = sysfs.read_int(f"{zone.path}/temp")
    if milli <= OFFLINE_MILLI_C:
        raise SysfsError(sysfs.path(f"{zone.path}/temp"), "sensor offline (-256 °C)")
    return milli / 1000.0


def zone_trips(sysfs: Sysfs, zone: ThermalZone) -> dict[str, float]:
    """Trip points by meaning (shutdown/slowdown/hot) in °C; the lowest of each type wins."""
    trips: dict[str, float] = {}
    for type_path in sysfs.glob(f"{zone.path}/trip_point_*_type"):
        meaning = TRIP_NAMES.get(_read_or_empty(sysfs, type_path))
        celsius = _trip_celsius(sysfs, type_path.removesuffix("_type") + "_temp")
        if meaning and celsius is not None:
            trips[meaning] = min(celsius, trips.get(meaning, celsius))
    return trips


def gpu_zone(zones: list[ThermalZone]) -> ThermalZone | None:
    return next((zone for zone in zones if zone.type.upper().startswith(GPU_ZONE_PREFIX)), None)


def _read_or_empty(sysfs: Sysfs, relative: str) -> str:
    try:
        return sysfs.read_text(relative)
    except SysfsError:
        return ""


def _trip_celsius(sysfs: Sysfs, relative: str) -> float | None:
    try:
        return sysfs.read_int(relative) / 1000.0
    except SysfsError:
        return None


@dataclass(frozen=True)
class RailLayout:
    """Where an INA3221 driver generation puts rail labels, and how to turn a rail into watts."""

    label_glob: str
    label_pattern: re.Pattern[str]
    watts: Callable[[Sysfs, str, str], float]


RAIL_LAYOUTS: tuple[RailLayout, ...] = (
    # JetPack 5+/hwmon (Orin): inN_label, inN_input mV, currN_input mA.
    RailLayout("sys/bus/i2c/devices/*/hwmon/hwmon*/in*_label", re.compile(r"in(\d+)_label$"),
               lambda fs, d, n: fs.read_int(f"{d}/in{n}_input") * fs.read_int(f"{d}/curr{n}_input") / 1e6),
    # JetPack 4/iio (Xavier): rail_name_N, in_powerN_input mW.
    RailLayout("sys/bus/i2c/devices/*/iio:device*/rail_name_*", re.compile(r"rail_name_(\d+)$"),
               lambda fs, d, n: fs.read_int(f"{d}/in_power{n}_input") / 1e3),
)


def gpu_rail_watts(sysfs: Sysfs) -> float:
    """Power of the first rail whose label names the GPU (Orin: VDD_GPU_SOC, Xavier: GPU)."""
    for layout in RAIL_LAYOUTS:
        for label_path in sysfs.glob(layout.label_glob):
            if GPU_ZONE_PREFIX in _read_or_empty(sysfs, label_path).upper():
                folder, _, file_name = label_path.rpartition("/")
                number = layout.label_pattern.search(file_name)
                if number:
                    return layout.watts(sysfs, folder, number.group(1))
    raise SysfsError(sysfs.path("sys/bus/i2c/devices"), "no INA3221 rail labelled GPU")


NVMAP_USED = "NvMapMemUsed"


def gpu_memory(meminfo: dict[str, int]) -> tuple[int, int]:
    """(used, total) bytes: NvMap allocations (what the GPU holds) out of the shared RAM."""
    if NVMAP_USED not in meminfo:
        raise KeyError(f"no {NVMAP_USED} in proc/meminfo (kernel without nvmap accounting)")
    return meminfo[NVMAP_USED], meminfo["MemTotal"]


def thermal_throttle_reasons(temperatures: dict[str, float], trips: dict[str, dict[str, float]]) -> list[str]:
    """'sw_thermal_slowdown' when any zone is at or past its passive (slowdown) trip point."""
    hot = [zone for zone, celsius in temperatures.items()
           if celsius >= trips.get(zone, {}).get("slowdown", float("inf"))]
    return ["sw_thermal_slowdown"] if hot else []
