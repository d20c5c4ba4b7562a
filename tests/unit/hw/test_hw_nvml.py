"""NvmlBackend over the fake NVML (real pynvml constants, structs and error classes)."""

from __future__ import annotations

import inspect
import json
from dataclasses import asdict
from pathlib import Path

import pynvml
import pytest
from fake_nvml import FakeGpu, FakeNvml

from ishowttsd.hw.base import SystemSample
from ishowttsd.hw.nvml import NvmlBackend
from ishowttsd.hw.nvml_decode import decode_reasons, lock_verdict, reason_bits, snap_target

CAPTURE = Path(__file__).resolve().parents[2] / "fixtures" / "nvml" / "h100_sxm_driver580.json"


class StaticSystem:
    def sample(self) -> SystemSample:
        return SystemSample(cpu_percent=12.5)


def backend_for(*gpus: FakeGpu, **kwargs: object) -> tuple[NvmlBackend, FakeNvml]:
    nvml = FakeNvml(list(gpus))
    return NvmlBackend(nvml, system=StaticSystem(), **kwargs), nvml  # type: ignore[arg-type]


def test_fake_functions_have_the_real_pynvml_signatures() -> None:
    fake_functions = [name for name in vars(FakeNvml) if name.startswith("nvml")]
    assert len(fake_functions) >= 20
    for name in fake_functions:
        real = list(inspect.signature(getattr(pynvml, name)).parameters.values())
        fake = list(inspect.signature(getattr(FakeNvml, name)).parameters.values())[1:]  # drop self
        assert [(p.name, p.default) for p in fake] == [(p.name, p.default) for p in real], name


def test_fake_raises_real_pynvml_error_classes() -> None:
    nvml = FakeNvml([FakeGpu(errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVML_ERROR_NO_PERMISSION})])
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        nvml.nvmlDeviceGetCount()
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        nvml.nvmlDeviceSetGpuLockedClocks(handle, 1980, 1980)


def test_fake_from_capture_reproduces_the_real_backend_sample() -> None:
    captured = json.loads(CAPTURE.read_text())
    backend, _ = backend_for(FakeGpu.from_capture(CAPTURE))
    sample = asdict(backend.sample()[0])
    real = captured["backend_sample"][0]
    sample_power, real_power = sample.pop("power_w"), real.pop("power_w")
    assert sample == real and real_power == pytest.approx(84.612)
    assert sample_power == captured["device0"]["power_mw"]["value"] / 1000


def test_idle_unlocked_gpu_verifies_as_unknown_like_the_real_one() -> None:
    captured = json.loads(CAPTURE.read_text())
    backend, _ = backend_for(FakeGpu.from_capture(CAPTURE))
    state = backend.verify_clocks()
    assert state.locked is None and captured["backend_verify"]["locked"] is None
    assert state.reason == captured["backend_verify"]["reason"]
    assert state.details["nvml:0"]["app_clock_target_mhz"] == 1980


def test_sample_fields_and_units() -> None:
    power_cap = pynvml.nvmlClocksEventReasonSwPowerCap
    backend, _ = backend_for(FakeGpu(utilization_gpu=73, busy=True, extra_reasons=power_cap))
    sample = backend.sample()[0]
    assert sample.device == "nvml:0" and not sample.partial
    assert sample.utilization_percent == 73.0 and sample.power_w == pytest.approx(87.727)
    assert (sample.memory_used_bytes, sample.memory_total_bytes) == (503316480, 85520809984)
    assert sample.temperatures == {"gpu": 36.0, "memory": 37.0}
    assert sample.temperature_thresholds == {"slowdown": 89.0, "shutdown": 95.0, "gpu_max": 87.0,
                                             "memory_max": 95.0}
    assert (sample.sm_clock_mhz, sample.sm_clock_max_mhz, sample.mem_clock_mhz) == (1980.0, 1980.0, 2619.0)
    assert sample.throttle_reasons == ["sw_power_cap"]
    assert backend.system_sample().cpu_percent == 12.5


def test_not_supported_fields_degrade_to_a_partial_sample() -> None:
    gpu = FakeGpu(memory_temperature=None, thresholds={},
                  errors={"nvmlDeviceGetPowerUsage": pynvml.NVML_ERROR_NOT_SUPPORTED,
                          "nvmlDeviceGetUtilizationRates": pynvml.NVML_ERROR_NO_PERMISSION})
    sample = backend_for(gpu)[0].sample()[0]
    assert sample.partial
    assert sample.power_w is None and sample.utilization_percent is None
    assert sample.temperatures == {"gpu": 36.0} and sample.temperature_thresholds == {}
    assert sample.missing["power_w"] == "not supported by this GPU/driver"
    assert sample.missing["utilization_percent"] == "permission denied (needs root)"
    assert sample.missing["temperatures.memory"] == "not supported by this GPU/driver"
    assert sample.missing["temperature_thresholds.slowdown"] == "not supported by this GPU/driver"
    assert sample.memory_total_bytes == 85520809984


def test_event_reasons_fall_back_to_throttle_reasons_on_old_drivers() -> None:
    gpu = FakeGpu(errors={"nvmlDeviceGetCurrentClocksEventReasons": pynvml.NVML_ERROR_FUNCTION_NOT_FOUND})
    backend, nvml = backend_for(gpu)
    assert backend.sample()[0].throttle_reasons == ["gpu_idle"]
    called = [name for name, _ in nvml.calls]
    assert called.index("nvmlDeviceGetCurrentClocksEventReasons") < called.index(
        "nvmlDeviceGetCurrentClocksThrottleReasons")


def test_throttle_bitmask_decoding_uses_the_pynvml_constants() -> None:
    bits = reason_bits(pynvml)
    mask = pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown | 0x200
    assert decode_reasons(mask, bits) == ["sw_power_cap", "hw_thermal_slowdown", "unknown_0x200"]
    assert decode_reasons(0, bits) == []
    assert decode_reasons(pynvml.nvmlClocksEventReasonAll, bits) == [
        "gpu_idle", "applications_clocks_setting", "sw_power_cap", "hw_slowdown", "sync_boost",
        "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown", "display_clock_setting"]


def test_init_once_and_shutdown_on_close() -> None:
    nvml = FakeNvml([FakeGpu()])
    with NvmlBackend(nvml, system=StaticSystem()) as backend:  # type: ignore[arg-type]
        backend.sample()
        backend.verify_clocks()
        assert nvml.init_calls == 1 and nvml.shutdown_calls == 0
    backend.close()
    assert nvml.shutdown_calls == 1 and nvml.initialized == 0


def test_reads_after_close_degrade_instead_of_raising() -> None:
    backend, _ = backend_for(FakeGpu())
    backend.close()
    sample = backend.sample()[0]
    assert sample.partial and sample.missing["sm_clock_mhz"] == "NVML not initialised"
    assert backend.verify_clocks().locked is None


def test_target_is_the_max_supported_or_the_configured_clock_snapped_down() -> None:
    assert snap_target(0, [345, 1500, 1980]) == 1980
    assert snap_target(1507, [345, 1500, 1515, 1980]) == 1500
    assert snap_target(100, [345, 1980]) == 345
    assert snap_target(1600, []) == 1600
    gpu = FakeGpu(errors={"nvmlDeviceGetSupportedMemoryClocks": pynvml.NVML_ERROR_NOT_SUPPORTED})
    backend, _ = backend_for(gpu)
    assert backend.target_mhz(gpu) == 1980  # nvmlDeviceGetMaxClockInfo(GRAPHICS) fallback


def test_lock_verify_drift_relock_restore() -> None:
    gpu = FakeGpu(busy=True)
    backend, _ = backend_for(gpu, sm_clock_mhz=1507)
    result = backend.lock_clocks()
    assert result.ok and result.applied == {"nvml:0": {"sm_clock_mhz": 1500}} and gpu.locked == (1500, 1500)
    state = backend.verify_clocks()
    assert state.locked is True and state.details["nvml:0"]["sm_clock_mhz"] == 1500
    gpu.locked = None  # someone ran `nvidia-smi -rgc`: the busy GPU boosts past the target
    drifted = backend.verify_clocks()
    assert drifted.locked is False and "lock lost" in drifted.reason
    assert backend.lock_clocks().ok and backend.verify_clocks().locked is True
    restored = backend.restore_clocks()
    assert restored.ok and gpu.locked is None and restored.applied == {"nvml:0": {"reset": True}}


def test_power_capped_or_idle_gpu_is_unknown_not_drift() -> None:
    gpu = FakeGpu(busy=True, capped_sm_mhz=1400, extra_reasons=pynvml.nvmlClocksEventReasonSwPowerCap)
    backend, _ = backend_for(gpu)
    backend.lock_clocks()
    state = backend.verify_clocks()
    assert state.locked is None and "limited by sw_power_cap" in state.reason
    assert lock_verdict(1980, 1000, [], 15)[0] is False
    assert lock_verdict(1980, 1970, [], 15)[0] is True


def test_no_permission_is_a_clear_result() -> None:
    gpu = FakeGpu(errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVML_ERROR_NO_PERMISSION,
                          "nvmlDeviceResetGpuLockedClocks": pynvml.NVML_ERROR_NO_PERMISSION})
    backend, _ = backend_for(gpu)
    for result in (backend.lock_clocks(), backend.restore_clocks()):
        assert not result.ok and result.permission_denied and not result.not_applicable
        assert "permission denied" in result.message
    assert gpu.locked is None


def test_locking_not_supported_is_not_applicable() -> None:
    gpu = FakeGpu(errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVML_ERROR_NOT_SUPPORTED})
    result = backend_for(gpu)[0].lock_clocks()
    assert not result.ok and result.not_applicable and not result.permission_denied


def test_multi_gpu_partial_failure_and_device_selection() -> None:
    good = FakeGpu()
    denied = FakeGpu(errors={"nvmlDeviceSetGpuLockedClocks": pynvml.NVML_ERROR_NO_PERMISSION})
    backend, _ = backend_for(good, denied)
    assert backend.devices() == ["nvml:0", "nvml:1"]
    result = backend.lock_clocks()
    assert not result.ok and result.permission_denied and list(result.applied) == ["nvml:0"]
    only_second, _ = backend_for(good, denied, device_indices=[1])
    assert only_second.devices() == ["nvml:1"]


def test_persistence_mode_read_and_reported_in_verify() -> None:
    gpu = FakeGpu(busy=True, persistence=pynvml.NVML_FEATURE_DISABLED)
    backend, _ = backend_for(gpu)
    assert backend.persistence_mode() is False
    backend.lock_clocks()
    assert "persistence mode off" in backend.verify_clocks().reason
    gpu.errors["nvmlDeviceGetPersistenceMode"] = pynvml.NVML_ERROR_NOT_SUPPORTED
    assert backend.persistence_mode() is None
    assert backend_for(FakeGpu())[0].persistence_mode() is True


class OldPynvml(FakeNvml):
    """An older nvidia-ml-py without some functions (AttributeError on access)."""

    absent = frozenset({"nvmlDeviceGetFieldValues", "nvmlDeviceGetCurrentClocksEventReasons",
                        "nvmlDeviceSetGpuLockedClocks"})

    def __getattribute__(self, name: str) -> object:
        if name in type(self).absent:
            raise AttributeError(name)
        return super().__getattribute__(name)


def test_an_older_pynvml_without_some_functions_degrades() -> None:
    backend = NvmlBackend(OldPynvml([FakeGpu()]), system=StaticSystem())  # type: ignore[arg-type]
    sample = backend.sample()[0]
    assert sample.throttle_reasons == ["gpu_idle"]  # via the throttle-reasons fallback
    assert list(sample.missing) == ["temperatures.memory"]
    assert sample.missing["temperatures.memory"].startswith("AttributeError: ")
    assert "nvmlDeviceGetFieldValues" in sample.missing["temperatures.memory"]
    result = backend.lock_clocks()
    assert not result.ok and result.not_applicable and "lacks" in result.message


def test_failure_after_init_shuts_nvml_down_again() -> None:
    nvml = FakeNvml([FakeGpu()])
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        NvmlBackend(nvml, device_indices=[5], system=StaticSystem())  # type: ignore[arg-type]
    assert nvml.init_calls == 1 and nvml.shutdown_calls == 1
