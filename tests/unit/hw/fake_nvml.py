"""A fake pynvml module for tests: same function names and signatures as pynvml (checked by
test_nvml.py against the installed module), real pynvml constants, structs and NVMLError
subclasses, so `except pynvml.NVMLError_NoPermission` works on what it raises.

A FakeGpu holds one device's state. Clock model: idle → the idle clock; busy → the locked
clock if a lock is set, else the boost maximum; `capped_sm_mhz` (with `extra_reasons`, e.g. a
power cap) holds a busy GPU lower. `errors` maps a function name to the NVML return code it
raises for that device (NOT_SUPPORTED, NO_PERMISSION, FUNCTION_NOT_FOUND, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pynvml

FORWARDED_PREFIXES = ("NVML_", "NVMLError", "nvmlClocksEventReason", "nvmlClocksThrottleReason", "c_nvml")
THRESHOLD_NAMES = ("SHUTDOWN", "SLOWDOWN", "MEM_MAX", "GPU_MAX")
GPU_CLOCKS = (pynvml.NVML_CLOCK_GRAPHICS, pynvml.NVML_CLOCK_SM)


@dataclass
class FakeGpu:
    name: str = "NVIDIA H100 80GB HBM3"
    memory_total: int = 85520809984
    memory_used: int = 503316480
    utilization_gpu: int = 0
    utilization_memory: int = 0
    temperature: int = 36
    memory_temperature: int | None = 37
    thresholds: dict[int, int] = field(default_factory=lambda: {
        pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 95, pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 89,
        pynvml.NVML_TEMPERATURE_THRESHOLD_MEM_MAX: 95, pynvml.NVML_TEMPERATURE_THRESHOLD_GPU_MAX: 87})
    max_clocks: dict[int, int] = field(default_factory=lambda: {
        pynvml.NVML_CLOCK_GRAPHICS: 1980, pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619,
        pynvml.NVML_CLOCK_VIDEO: 1545})
    idle_clocks: dict[int, int] = field(default_factory=lambda: {
        pynvml.NVML_CLOCK_GRAPHICS: 345, pynvml.NVML_CLOCK_SM: 345, pynvml.NVML_CLOCK_MEM: 2619,
        pynvml.NVML_CLOCK_VIDEO: 765})
    app_clock_target: dict[int, int] = field(default_factory=lambda: {
        pynvml.NVML_CLOCK_GRAPHICS: 1980, pynvml.NVML_CLOCK_SM: 1980, pynvml.NVML_CLOCK_MEM: 2619})
    supported_graphics: dict[int, list[int]] = field(default_factory=lambda: {
        2619: list(range(1980, 344, -15)), 1593: list(range(1980, 344, -15))})
    power_mw: int = 87727
    persistence: int = pynvml.NVML_FEATURE_ENABLED
    busy: bool = False
    extra_reasons: int = 0
    capped_sm_mhz: int | None = None
    locked: tuple[int, int] | None = None
    errors: dict[str, int] = field(default_factory=dict)

    def current_clock(self, clock_type: int) -> int:
        if clock_type not in GPU_CLOCKS or not self.busy:
            return self.idle_clocks[clock_type]
        clock = self.locked[1] if self.locked else self.max_clocks[clock_type]
        return min(clock, self.capped_sm_mhz) if self.capped_sm_mhz else clock

    def reasons(self) -> int:
        idle = 0 if self.busy else pynvml.nvmlClocksEventReasonGpuIdle
        return idle | self.extra_reasons

    @classmethod
    def from_capture(cls, path: Path) -> FakeGpu:
        """A device answering like the captured real one (tests/fixtures/nvml/*.json)."""
        raw = json.loads(Path(path).read_text())["device0"]
        value = {key: entry["value"] for key, entry in raw.items()
                 if isinstance(entry, dict) and "value" in entry}
        return cls(**_capture_readings(raw, value), **_capture_clocks(raw, value))


def _capture_readings(raw: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    memory, utilization = value["memory"], value["utilization"]
    thresholds = {getattr(pynvml, f"NVML_TEMPERATURE_THRESHOLD_{name}"): value[f"threshold_{name}"]
                  for name in THRESHOLD_NAMES}
    return {"name": value["name"], "memory_total": memory["total"], "memory_used": memory["used"],
            "utilization_gpu": utilization["gpu"], "utilization_memory": utilization["memory"],
            "temperature": value["temperature_gpu"], "memory_temperature": raw["field_memory_temp"]["uiVal"],
            "thresholds": thresholds, "power_mw": value["power_mw"], "persistence": value["persistence"],
            "extra_reasons": value["event_reasons"] & ~pynvml.nvmlClocksEventReasonGpuIdle}


def _capture_clocks(raw: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    clocks = {getattr(pynvml, f"NVML_CLOCK_{name}"): name for name in ("GRAPHICS", "SM", "MEM", "VIDEO")}
    return {"max_clocks": {c: value[f"max_clock_{n}"] for c, n in clocks.items()},
            "idle_clocks": {c: value[f"clock_{n}"] for c, n in clocks.items()},
            "app_clock_target": {c: value[f"clock_{n}_APP_CLOCK_TARGET"] for c, n in clocks.items()
                                 if f"clock_{n}_APP_CLOCK_TARGET" in value},
            "supported_graphics": {int(mem): entry["value"]
                                   for mem, entry in raw["supported_graphics_clocks"].items()}}


class FakeNvml:
    """Module-like object exposing pynvml's API over FakeGpu devices."""

    def __init__(self, gpus: list[FakeGpu], init_error: int | None = None) -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.initialized = 0
        self.init_calls = 0
        self.shutdown_calls = 0
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Any:
        if name.startswith(FORWARDED_PREFIXES):
            return getattr(pynvml, name)
        raise AttributeError(name)

    # -- helpers ---------------------------------------------------------------------------
    def _check(self, function: str, handle: FakeGpu | None = None, *args: Any) -> None:
        self.calls.append((function, args))
        if not self.initialized:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_UNINITIALIZED)
        if handle is not None and function in handle.errors:
            raise pynvml.NVMLError(handle.errors[function])

    # -- init ------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.init_calls += 1
        if self.init_error is not None:
            raise pynvml.NVMLError(self.init_error)
        self.initialized += 1

    def nvmlShutdown(self) -> None:
        self._check("nvmlShutdown")
        self.shutdown_calls += 1
        self.initialized -= 1

    # -- discovery -------------------------------------------------------------------------
    def nvmlDeviceGetCount(self) -> int:
        self._check("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeGpu:
        self._check("nvmlDeviceGetHandleByIndex", None, index)
        if not 0 <= index < len(self.gpus):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index]

    def nvmlDeviceGetName(self, handle: FakeGpu) -> str:
        self._check("nvmlDeviceGetName", handle)
        return handle.name

    # -- readings --------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle: FakeGpu) -> pynvml.c_nvmlUtilization_t:
        self._check("nvmlDeviceGetUtilizationRates", handle)
        return pynvml.c_nvmlUtilization_t(gpu=handle.utilization_gpu, memory=handle.utilization_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: FakeGpu, version: Any = None) -> pynvml.c_nvmlMemory_t:
        self._check("nvmlDeviceGetMemoryInfo", handle)
        free = handle.memory_total - handle.memory_used
        return pynvml.c_nvmlMemory_t(total=handle.memory_total, free=free, used=handle.memory_used)

    def nvmlDeviceGetTemperature(self, handle: FakeGpu, sensor: int) -> int:
        self._check("nvmlDeviceGetTemperature", handle, sensor)
        return handle.temperature

    def nvmlDeviceGetTemperatureThreshold(self, handle: FakeGpu, threshold: int) -> int:
        self._check("nvmlDeviceGetTemperatureThreshold", handle, threshold)
        if threshold not in handle.thresholds:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return handle.thresholds[threshold]

    def nvmlDeviceGetFieldValues(self, handle: FakeGpu, fieldIds: list[int]) -> Any:
        self._check("nvmlDeviceGetFieldValues", handle, tuple(fieldIds))
        values = (pynvml.c_nvmlFieldValue_t * len(fieldIds))()
        for slot, field_id in zip(values, fieldIds, strict=True):
            slot.fieldId = field_id
            known = field_id == pynvml.NVML_FI_DEV_MEMORY_TEMP and handle.memory_temperature is not None
            slot.nvmlReturn = pynvml.NVML_SUCCESS if known else pynvml.NVML_ERROR_NOT_SUPPORTED
            slot.valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
            slot.value.uiVal = handle.memory_temperature if known else 0
        return values

    def nvmlDeviceGetClockInfo(self, handle: FakeGpu, type: int) -> int:
        self._check("nvmlDeviceGetClockInfo", handle, type)
        return handle.current_clock(type)

    def nvmlDeviceGetMaxClockInfo(self, handle: FakeGpu, type: int) -> int:
        self._check("nvmlDeviceGetMaxClockInfo", handle, type)
        return handle.max_clocks[type]

    def nvmlDeviceGetClock(self, handle: FakeGpu, type: int, id: int) -> int:
        self._check("nvmlDeviceGetClock", handle, type, id)
        readers = {pynvml.NVML_CLOCK_ID_CURRENT: lambda: handle.current_clock(type),
                   pynvml.NVML_CLOCK_ID_APP_CLOCK_TARGET: lambda: handle.app_clock_target[type]}
        try:
            return readers[id]()
        except KeyError:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED) from None

    def nvmlDeviceGetSupportedMemoryClocks(self, handle: FakeGpu) -> list[int]:
        self._check("nvmlDeviceGetSupportedMemoryClocks", handle)
        return sorted(handle.supported_graphics, reverse=True)

    def nvmlDeviceGetSupportedGraphicsClocks(self, handle: FakeGpu, memoryClockMHz: int) -> list[int]:
        self._check("nvmlDeviceGetSupportedGraphicsClocks", handle, memoryClockMHz)
        if memoryClockMHz not in handle.supported_graphics:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return list(handle.supported_graphics[memoryClockMHz])

    def nvmlDeviceGetPowerUsage(self, handle: FakeGpu) -> int:
        self._check("nvmlDeviceGetPowerUsage", handle)
        return handle.power_mw

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: FakeGpu) -> int:
        self._check("nvmlDeviceGetCurrentClocksEventReasons", handle)
        return handle.reasons()

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: FakeGpu) -> int:
        self._check("nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        return handle.reasons()

    def nvmlDeviceGetPersistenceMode(self, handle: FakeGpu) -> int:
        self._check("nvmlDeviceGetPersistenceMode", handle)
        return handle.persistence

    # -- settings --------------------------------------------------------------------------
    def nvmlDeviceSetGpuLockedClocks(self, handle: FakeGpu, minGpuClockMHz: int, maxGpuClockMHz: int) -> None:
        self._check("nvmlDeviceSetGpuLockedClocks", handle, minGpuClockMHz, maxGpuClockMHz)
        if minGpuClockMHz > maxGpuClockMHz:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        handle.locked = (minGpuClockMHz, maxGpuClockMHz)

    def nvmlDeviceResetGpuLockedClocks(self, handle: FakeGpu) -> None:
        self._check("nvmlDeviceResetGpuLockedClocks", handle)
        handle.locked = None
