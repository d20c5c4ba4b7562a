"""Jetson backend: GPU devfreq + thermal zones + INA3221 rails, clocks via nvpmodel/jetson_clocks.

Locking (root helper only), in this order:
1. Write the lock record (originals: devfreq min/max, nvpmodel mode, `jetson_clocks --store
   <state_dir>/jetson_clocks.conf`) unless one exists (a re-lock keeps the first originals).
2. `nvpmodel -m <gpu.nvpmodel_mode>` when the mode is >= 0 and the tool exists.
3. `jetson_clocks` when it exists.
4. Enforce devfreq min_freq = max_freq = target by sysfs writes if the knobs are not there yet
   (the whole lock when the tools are missing). target = highest available frequency, or the
   power mode's cap when step 2 set a mode that caps lower.
Restore: `jetson_clocks --restore <our file>`, `nvpmodel -m <original>`, then the recorded devfreq
min/max written back; the record is removed once the originals read back.
Verify (works unprivileged): min == max == cur == target (the record's target, else the highest
available frequency) and, when a mode is configured, `nvpmodel -q` reports that mode.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from ishowttsd.hw.base import (
    ClockResult,
    ClockState,
    FieldReader,
    GpuSample,
    HardwareUnavailable,
    SystemSample,
    SystemSampler,
)
from ishowttsd.hw.command import CommandRunner
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
    gpu_memory,
    gpu_rail_watts,
    gpu_zone,
    read_devfreq,
    thermal_throttle_reasons,
    thermal_zones,
    write_devfreq,
    zone_celsius,
    zone_trips,
)
from ishowttsd.hw.jetson_tools import JetsonTools
from ishowttsd.hw.sysfs import Sysfs, SysfsError, SysfsPermissionDenied
from ishowttsd.hw.system import parse_meminfo, system_sampler_for

EMC_RATE = "sys/kernel/debug/bpmp/debug/clk/emc/rate"  # Hz; debugfs, readable by root only
EMC_MAX_RATE = "sys/kernel/debug/bpmp/debug/clk/emc/max_rate"
READ_ERRORS = (SysfsError, KeyError, ValueError)
NEEDS_ROOT = "Permission denied (clock locking needs root)"
MEMORY_FIELDS = ("memory_used_bytes", "memory_total_bytes")


def _describe(exc: BaseException) -> str:
    return exc.reason if isinstance(exc, SysfsError) else str(exc).strip("'\"")


def _failure(action: str, exc: Exception) -> ClockResult:
    denied = isinstance(exc, (SysfsPermissionDenied, PermissionError))
    return ClockResult(ok=False, message=f"{action}: {exc}", permission_denied=denied)


class JetsonBackend:
    name = "jetson"

    def __init__(self, sysfs: Sysfs, runner: CommandRunner, state_dir: Path, nvpmodel_mode: int,
                 system: SystemSampler | None = None) -> None:
        node = find_gpu_devfreq(sysfs)
        if node is None:
            raise HardwareUnavailable(f"no Jetson GPU devfreq node under {sysfs.path('sys/class/devfreq')}")
        self._sysfs, self._node = sysfs, node
        self._tools = JetsonTools(runner)
        self._records = LockRecordStore(state_dir)
        self._mode = nvpmodel_mode
        self._system = system or system_sampler_for(sysfs)
        self._label = f"jetson:{PurePosixPath(node).name}"

    @property
    def devfreq_node(self) -> str:
        return self._node

    def devices(self) -> list[str]:
        return [self._label]

    def close(self) -> None:
        """Nothing to release: every read opens and closes its file."""

    def persistence_mode(self) -> bool | None:
        return None  # an NVML concept; the Jetson driver is always loaded

    def system_sample(self) -> SystemSample:
        return self._system.sample()

    def sample(self) -> list[GpuSample]:
        fs, node, reader = self._sysfs, self._node, FieldReader(_describe, READ_ERRORS)
        reader.read("utilization_percent", lambda: fs.read_int(f"{node}/device/load") / 10.0)
        reader.read("sm_clock_mhz", lambda: fs.read_int(f"{node}/cur_freq") / 1e6)
        reader.read("sm_clock_max_mhz", lambda: fs.read_int(f"{node}/max_freq") / 1e6)
        reader.read("mem_clock_mhz", lambda: fs.read_int(EMC_RATE) / 1e6)
        reader.read("mem_clock_max_mhz", lambda: fs.read_int(EMC_MAX_RATE) / 1e6)
        reader.read("power_w", lambda: gpu_rail_watts(fs))
        memory = reader.read("memory", lambda: gpu_memory(parse_meminfo(fs.read_text("proc/meminfo"))))
        thermal = self._thermal(reader)
        values = {key: value for key, value in reader.values.items() if key != "memory"}
        memory_fields = {} if memory is None else dict(zip(MEMORY_FIELDS, memory, strict=True))
        return [GpuSample(device=self._label, **values, **memory_fields, **thermal, missing=reader.missing)]

    def _thermal(self, reader: FieldReader) -> dict[str, Any]:
        zones = thermal_zones(self._sysfs)
        reads: dict[str, Callable[[], float]] = {zone.type: partial(zone_celsius, self._sysfs, zone)
                                                 for zone in zones}
        temperatures = reader.read_group("temperatures", reads)
        trips = {zone.type: zone_trips(self._sysfs, zone) for zone in zones}
        gpu = gpu_zone(zones)
        return {"temperatures": temperatures,
                "temperature_thresholds": trips.get(gpu.type, {}) if gpu else {},
                "throttle_reasons": thermal_throttle_reasons(temperatures, trips)}

    def _devfreq(self) -> DevfreqState:
        return read_devfreq(self._sysfs, self._node)

    def _require_root_access(self) -> None:
        """Fail before any side effect (record, tools) when the devfreq knobs are not writable."""
        for knob in (f"{self._node}/min_freq", f"{self._node}/max_freq"):
            if self._sysfs.exists(knob) and not self._sysfs.writable(knob):
                raise SysfsPermissionDenied(self._sysfs.path(knob), NEEDS_ROOT)

    def lock_clocks(self) -> ClockResult:
        try:
            self._require_root_access()
            return self._lock()
        except (SysfsError, OSError, ValueError) as exc:
            return _failure("lock", exc)

    def _lock(self) -> ClockResult:
        steps: list[str] = []
        record = self._ensure_record(steps)
        mode_applied = self._apply_mode(steps)
        self._apply_jetson_clocks(steps)
        target = lock_target(self._devfreq(), mode_applied)
        self._enforce(target, steps)
        self._records.save(record.with_target(target))
        return self._lock_result(target, steps)

    def _ensure_record(self, steps: list[str]) -> LockRecord:
        record = self._records.load()
        if record is not None:
            steps.append("kept the originals recorded by an earlier lock")
            return record
        state = self._devfreq()
        record = LockRecord(self._node, state.min_hz, state.max_hz, original_mode=self._current_mode_id(),
                            store_file=self._store(steps))
        self._records.save(record)
        return record

    def _current_mode_id(self) -> int | None:
        if self._mode < 0 or not self._tools.has_nvpmodel():
            return None
        mode, _ = self._tools.query_mode()
        return mode.id if mode else None

    def _store(self, steps: list[str]) -> str | None:
        if not self._tools.has_jetson_clocks():
            return None
        self._records.ensure_dir()
        self._records.store_file.unlink(missing_ok=True)  # --store would prompt over an existing file
        result = self._tools.store(self._records.store_file)
        steps.append("jetson_clocks --store: ok" if result.ok else result.describe())
        return str(self._records.store_file) if result.ok else None

    def _apply_mode(self, steps: list[str]) -> bool:
        if self._mode < 0:
            return False
        if not self._tools.has_nvpmodel():
            steps.append("nvpmodel not found: power mode left as is")
            return False
        result = self._tools.set_mode(self._mode)
        steps.append(f"nvpmodel -m {self._mode}: ok" if result.ok else result.describe())
        return result.ok

    def _apply_jetson_clocks(self, steps: list[str]) -> None:
        if not self._tools.has_jetson_clocks():
            steps.append("jetson_clocks not found: devfreq writes only")
            return
        result = self._tools.apply()
        steps.append("jetson_clocks: ok" if result.ok else result.describe())

    def _enforce(self, target_hz: int, steps: list[str]) -> None:
        state = self._devfreq()
        if knobs_at(state, target_hz):
            return
        write_devfreq(self._sysfs, self._node, devfreq_writes(state.max_hz, target_hz, target_hz))
        steps.append(f"devfreq min_freq=max_freq={target_hz}")

    def _lock_result(self, target_hz: int, steps: list[str]) -> ClockResult:
        state = self._devfreq()
        ok = knobs_at(state, target_hz)
        applied: dict[str, Any] = {"devfreq": self._node, "target_hz": target_hz, "min_hz": state.min_hz,
                                   "max_hz": state.max_hz, "cur_hz": state.cur_hz}
        if self._tools.has_jetson_clocks():
            applied["jetson_clocks_show"] = self._tools.show()[0]
        _, reason = lock_verdict(state, target_hz)
        return ClockResult(ok=ok, applied=applied, message="lock: " + "; ".join([*steps, reason]))

    def restore_clocks(self) -> ClockResult:
        try:
            self._require_root_access()
            return self._restore()
        except (SysfsError, OSError, ValueError) as exc:
            return _failure("restore", exc)

    def _restore(self) -> ClockResult:
        record = self._records.load()
        if record is None:
            return ClockResult(ok=True, message="restore: no lock record, nothing to restore")
        steps: list[str] = []
        self._restore_jetson_clocks(record, steps)
        self._restore_mode(record, steps)
        self._restore_devfreq(record)
        ok, reason = restored_verdict(self._devfreq(), record)
        if ok:
            self._records.clear()
        applied = {"min_hz": record.original_min_hz, "max_hz": record.original_max_hz,
                   "nvpmodel_mode": record.original_mode}
        return ClockResult(ok=ok, applied=applied, message="restore: " + "; ".join([*steps, reason]))

    def _restore_devfreq(self, record: LockRecord) -> None:
        """Put the recorded min/max back (after the tools, which may already have done so)."""
        current_max = self._devfreq().max_hz
        writes = devfreq_writes(current_max, record.original_min_hz, record.original_max_hz)
        write_devfreq(self._sysfs, self._node, writes)

    def _restore_jetson_clocks(self, record: LockRecord, steps: list[str]) -> None:
        if record.store_file and Path(record.store_file).exists() and self._tools.has_jetson_clocks():
            result = self._tools.restore(Path(record.store_file))
            steps.append("jetson_clocks --restore: ok" if result.ok else result.describe())

    def _restore_mode(self, record: LockRecord, steps: list[str]) -> None:
        if record.original_mode is None or not self._tools.has_nvpmodel():
            return
        result = self._tools.set_mode(record.original_mode)
        steps.append(f"nvpmodel -m {record.original_mode}: ok" if result.ok else result.describe())

    def verify_clocks(self) -> ClockState:
        try:
            state = self._devfreq()
        except SysfsError as exc:
            return ClockState(locked=None, details={"devfreq": self._node},
                              reason=f"cannot read GPU devfreq: {exc}")
        target = self._verify_target(state)
        locked, reason = lock_verdict(state, target)
        details: dict[str, Any] = {"devfreq": self._node, "min_hz": state.min_hz, "max_hz": state.max_hz,
                                   "cur_hz": state.cur_hz, "target_hz": target, "governor": state.governor,
                                   "highest_hz": state.highest_hz}
        locked, reason = self._check_mode(locked, reason, details)
        return ClockState(locked=locked, details=details, reason=reason)

    def _verify_target(self, state: DevfreqState) -> int:
        try:
            record = self._records.load()
        except (ValueError, OSError):
            record = None
        return record.target_hz if record and record.target_hz else state.highest_hz

    def _check_mode(self, locked: bool, reason: str, details: dict[str, Any]) -> tuple[bool, str]:
        if self._mode < 0 or not self._tools.has_nvpmodel():
            return locked, reason
        mode, result = self._tools.query_mode()
        if mode is None:
            details["power_mode"] = result.describe()
            return locked, reason
        details["power_mode"] = {"id": mode.id, "name": mode.name}
        return mode_verdict(locked, reason, mode.id, mode.name, self._mode)
