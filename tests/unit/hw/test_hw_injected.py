"""hw/injected.py: the nvml_error fault wrapper, alone and under the real Sampler job."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))

from test_jobs_support import FakeBackend, gpu_sample, make_rig

from ishowttsd.hw.base import GpuBackend
from ishowttsd.hw.injected import INJECTED_DEVICE, NVML_ERROR, FaultInjectingBackend
from ishowttsd.hw.null import NullBackend
from ishowttsd.jobs.sampler import Sampler


def test_the_wrapper_is_a_gpu_backend_and_passes_everything_through_until_told() -> None:
    inner = FakeBackend(gpus=[gpu_sample("gpu0")])
    wrapped = FaultInjectingBackend(inner)
    assert isinstance(wrapped, GpuBackend) and wrapped.name == inner.name
    assert wrapped.sample() == inner.sample() and wrapped.devices() == ["gpu0"]
    assert wrapped.verify_clocks() == inner.verify_clocks()


def test_the_next_n_samples_fail_per_device_with_the_reason_then_real_reads_resume() -> None:
    wrapped = FaultInjectingBackend(FakeBackend(gpus=[gpu_sample("gpu0"), gpu_sample("gpu1")]))
    wrapped.fail_next(2)
    failed = [wrapped.sample() for _ in range(2)]
    assert all([s.device for s in samples] == ["gpu0", "gpu1"] for samples in failed)
    assert all(s.partial and s.memory_used_bytes is None and set(s.missing.values()) == {NVML_ERROR}
               for samples in failed for s in samples)
    assert not any(s.partial for s in wrapped.sample())


def test_without_a_gpu_the_failure_is_reported_for_the_injected_device() -> None:
    wrapped = FaultInjectingBackend(NullBackend())
    wrapped.fail_next(1)
    [sample] = wrapped.sample()
    assert sample.device == INJECTED_DEVICE and sample.partial
    assert wrapped.sample() == []


async def test_the_sampler_records_a_partial_sample_with_the_reason_and_keeps_going(tmp_path: Path) -> None:
    wrapped = FaultInjectingBackend(FakeBackend(gpus=[gpu_sample("gpu0", utilization_percent=40.0)]))
    rig = make_rig(tmp_path, backend=wrapped)
    sampler = Sampler(rig.ctx)
    await sampler.run()
    wrapped.fail_next(1)
    outcome = await sampler.run()
    assert outcome.status == "ok" and outcome.details["missing"]["gpu0"]["utilization_percent"] == NVML_ERROR
    assert rig.value("gpu_utilization_percent", device="gpu0") == 40.0  # left at the last known value
    recovered = await sampler.run()
    assert recovered.details["missing"] == {}
