"""NVML backend (desktop/datacenter NVIDIA GPUs) over an injected pynvml module.

`NvmlBackend(nvml=pynvml)` in production, a fake with the same function names and signatures in
tests. The constructor calls nvmlInit() once (an NVMLError propagates: choose_backend() uses that
to detect "no NVIDIA driver"); close() calls nvmlShutdown().

Locking: nvmlDeviceSetGpuLockedClocks(handle, target, target) with target = gpu.sm_clock_mhz
snapped down to a supported graphics clock, or the highest supported one (supported graphics
clocks at the highest supported memory clock; nvmlDeviceGetMaxClockInfo(GRAPHICS) where the list
is not supported). Restore: nvmlDeviceResetGpuLockedClocks.

Verification: NVML has no getter for the locked range in the drivers we support, so verify
recomputes the target the same way and compares it with the current SM clock
(nvmlDeviceGetClockInfo(NVML_CLOCK_SM)) and the clock event reasons: at target → locked; below
target with a power/thermal/idle reason → unknown (None, not drift); otherwise → lost. The
application-clock target (nvmlDeviceGetClock(.., APP_CLOCK_TARGET)) is recorded in the details
where supported but does not decide: application clocks are a separate mechanism from locked
clocks and keep their own value while a lock is active.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ishowttsd.hw.base import ClockResult, ClockState, FieldReader, GpuSample, SystemSample, SystemSampler
from ishowttsd.hw.nvml_decode import (
    DeviceLockState,
    DeviceOutcome,
    combine_outcomes,
    combine_states,
    decode_reasons,
    describe_error,
    lock_verdict,
    outcome_for_error,
    reason_bits,
    snap_target,
)
from ishowttsd.hw.system import PsutilSystemSampler

# Besides NVMLError: an older pynvml lacking a function (AttributeError), an unknown field value
# type (KeyError) or an unexpected value (ValueError) must degrade a read, never crash it.
READ_ERRORS: tuple[type[Exception], ...] = (AttributeError, KeyError, ValueError, OSError)
VALUE_TYPE_FIELDS: dict[str, str] = {
    "NVML_VALUE_TYPE_DOUBLE": "dVal", "NVML_VALUE_TYPE_UNSIGNED_INT": "uiVal",
    "NVML_VALUE_TYPE_UNSIGNED_LONG": "ulVal", "NVML_VALUE_TYPE_UNSIGNED_LONG_LONG": "ullVal",
    "NVML_VALUE_TYPE_SIGNED_LONG_LONG": "sllVal", "NVML_VALUE_TYPE_SIGNED_INT": "siVal",
    "NVML_VALUE_TYPE_UNSIGNED_SHORT": "usVal",
}
CLOCK_FIELDS: dict[str, tuple[str, str]] = {
    "sm_clock_mhz": ("nvmlDeviceGetClockInfo", "NVML_CLOCK_SM"),
    "sm_clock_max_mhz": ("nvmlDeviceGetMaxClockInfo", "NVML_CLOCK_SM"),
    "mem_clock_mhz": ("nvmlDeviceGetClockInfo", "NVML_CLOCK_MEM"),
    "mem_clock_max_mhz": ("nvmlDeviceGetMaxClockInfo", "NVML_CLOCK_MEM"),
}
THRESHOLDS: dict[str, str] = {
    "slowdown": "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN", "shutdown": "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN",
    "gpu_max": "NVML_TEMPERATURE_THRESHOLD_GPU_MAX", "memory_max": "NVML_TEMPERATURE_THRESHOLD_MEM_MAX",
}


class NvmlBackend:
    name = "nvml"

    def __init__(self, nvml: Any, device_indices: Sequence[int] | None = None, sm_clock_mhz: int = 0,
                 system: SystemSampler | None = None, tolerance_mhz: int = 15) -> None:
        self._nvml = nvml
        nvml.nvmlInit()
        self._open = True
        try:
            self._handles = self._open_handles(device_indices)
        except nvml.NVMLError:
            self.close()
            raise
        self._sm_clock_mhz = sm_clock_mhz
        self._system = system or PsutilSystemSampler()
        self._tolerance_mhz = tolerance_mhz
        self._bits = reason_bits(nvml)

    def _open_handles(self, device_indices: Sequence[int] | None) -> dict[str, Any]:
        nvml = self._nvml
        indices = range(nvml.nvmlDeviceGetCount()) if device_indices is None else device_indices
        return {f"nvml:{index}": nvml.nvmlDeviceGetHandleByIndex(index) for index in indices}

    def devices(self) -> list[str]:
        return list(self._handles)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._nvml.nvmlShutdown()

    def __enter__(self) -> NvmlBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def system_sample(self) -> SystemSample:
        return self._system.sample()

    def sample(self) -> list[GpuSample]:
        return [self._sample_device(label, handle) for label, handle in self._handles.items()]

    def _reader(self) -> FieldReader:
        return FieldReader(lambda exc: describe_error(self._nvml, exc), (self._nvml.NVMLError, *READ_ERRORS))

    def _sample_device(self, label: str, handle: Any) -> GpuSample:
        nv, reader = self._nvml, self._reader()
        reader.read("utilization_percent", lambda: float(nv.nvmlDeviceGetUtilizationRates(handle).gpu))
        memory = reader.read("memory", lambda: nv.nvmlDeviceGetMemoryInfo(handle))
        for field_name, (getter, clock) in CLOCK_FIELDS.items():
            reader.read(field_name, lambda g=getter, c=clock: float(getattr(nv, g)(handle, getattr(nv, c))))
        reader.read("power_w", lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000.0)
        reader.read("throttle_reasons", lambda: self._reasons(handle))
        temperatures = reader.read_group("temperatures", self._temperature_reads(handle))
        thresholds = reader.read_group("temperature_thresholds", self._threshold_reads(handle))
        values = {key: value for key, value in reader.values.items() if key != "memory"}
        return GpuSample(device=label, **values, **self._memory_fields(memory), temperatures=temperatures,
                         temperature_thresholds=thresholds, missing=reader.missing)

    @staticmethod
    def _memory_fields(memory: Any) -> dict[str, int]:
        return {} if memory is None else {"memory_used_bytes": int(memory.used),
                                          "memory_total_bytes": int(memory.total)}

    def _temperature_reads(self, handle: Any) -> dict[str, Callable[[], float]]:
        nv = self._nvml
        return {"gpu": lambda: float(nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
                "memory": lambda: self._field_value(handle, nv.NVML_FI_DEV_MEMORY_TEMP)}

    def _threshold_reads(self, handle: Any) -> dict[str, Callable[[], float]]:
        nv = self._nvml
        return {name: (lambda c=constant: float(nv.nvmlDeviceGetTemperatureThreshold(handle, getattr(nv, c))))
                for name, constant in THRESHOLDS.items()}

    def _field_value(self, handle: Any, field_id: int) -> float:
        nv = self._nvml
        value = nv.nvmlDeviceGetFieldValues(handle, [field_id])[0]
        if value.nvmlReturn != nv.NVML_SUCCESS:
            raise nv.NVMLError(value.nvmlReturn)
        by_type = {getattr(nv, name): member for name, member in VALUE_TYPE_FIELDS.items()}
        return float(getattr(value.value, by_type[value.valueType]))

    def _reasons(self, handle: Any) -> list[str]:
        nv = self._nvml
        fallback = (nv.NVMLError_FunctionNotFound, nv.NVMLError_NotSupported, AttributeError)
        try:
            mask = nv.nvmlDeviceGetCurrentClocksEventReasons(handle)
        except fallback:
            mask = nv.nvmlDeviceGetCurrentClocksThrottleReasons(handle)
        return decode_reasons(int(mask), self._bits)

    def persistence_mode(self) -> bool | None:
        modes = [self._persistence(handle) for handle in self._handles.values()]
        if not modes or None in modes:
            return None
        return all(modes)

    def _persistence(self, handle: Any) -> bool | None:
        try:
            return self._nvml.nvmlDeviceGetPersistenceMode(handle) == self._nvml.NVML_FEATURE_ENABLED
        except (self._nvml.NVMLError, *READ_ERRORS):
            return None

    def target_mhz(self, handle: Any) -> int:
        """The clock to lock to: configured (snapped to a supported one) or the highest supported."""
        nv = self._nvml
        try:
            top_memory = max(nv.nvmlDeviceGetSupportedMemoryClocks(handle))
            supported = nv.nvmlDeviceGetSupportedGraphicsClocks(handle, top_memory)
        except (nv.NVMLError_NotSupported, nv.NVMLError_FunctionNotFound, ValueError):
            supported = [nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_GRAPHICS)]
        return snap_target(self._sm_clock_mhz, supported)

    def lock_clocks(self) -> ClockResult:
        return combine_outcomes("lock", self._each_device(self._lock_device))

    def restore_clocks(self) -> ClockResult:
        return combine_outcomes("restore", self._each_device(self._reset_device))

    def _each_device(self, act: Callable[[Any], DeviceOutcome]) -> dict[str, DeviceOutcome]:
        outcomes = {}
        for label, handle in self._handles.items():
            try:
                outcomes[label] = act(handle)
            except self._nvml.NVMLError as exc:
                outcomes[label] = outcome_for_error(self._nvml, exc)
            except AttributeError as exc:
                outcomes[label] = DeviceOutcome("unsupported", None, f"this pynvml lacks it: {exc}")
        return outcomes

    def _lock_device(self, handle: Any) -> DeviceOutcome:
        target = self.target_mhz(handle)
        self._nvml.nvmlDeviceSetGpuLockedClocks(handle, target, target)
        return DeviceOutcome("ok", {"sm_clock_mhz": target}, f"locked graphics clock at {target} MHz")

    def _reset_device(self, handle: Any) -> DeviceOutcome:
        self._nvml.nvmlDeviceResetGpuLockedClocks(handle)
        return DeviceOutcome("ok", {"reset": True}, "locked clocks reset to driver default")

    def verify_clocks(self) -> ClockState:
        states = {label: self._verify_device(handle) for label, handle in self._handles.items()}
        return combine_states(states, self.persistence_mode())

    def _verify_device(self, handle: Any) -> DeviceLockState:
        nv, reader = self._nvml, self._reader()
        target = reader.read("target_mhz", lambda: self.target_mhz(handle))
        current = reader.read("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM))
        reasons = reader.read("throttle_reasons", lambda: self._reasons(handle)) or []
        reader.read("app_clock_target_mhz", lambda: nv.nvmlDeviceGetClock(
            handle, nv.NVML_CLOCK_SM, nv.NVML_CLOCK_ID_APP_CLOCK_TARGET))
        details = {**reader.values, "missing": reader.missing}
        if target is None or current is None:
            return DeviceLockState(None, "cannot read: " + ", ".join(reader.missing.values()), details)
        locked, reason = lock_verdict(int(target), int(current), reasons, self._tolerance_mhz)
        return DeviceLockState(locked, reason, details)
