"""Sampler job (R2, R7, R19): gauges and the bounded memory history."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from test_jobs_support import GIB, FakeBackend, gpu_sample, make_rig

from ishowttsd.decide.leak import MemorySample
from ishowttsd.fsutil import read_jsonl
from ishowttsd.hw.null import NullBackend
from ishowttsd.jobs.sampler import MEMORY_HISTORY, Sampler, memory_record, summary_line


async def test_sampler_sets_gpu_worker_gauges_and_writes_history(tmp_path: Path) -> None:
    gpus = [gpu_sample("gpu0", temperatures={"gpu": 71.0}, throttle_reasons=["sw_thermal_slowdown"]),
            gpu_sample("gpu1", utilization_percent=12.5, memory_used_bytes=2 * GIB)]
    rig = make_rig(tmp_path, backend=FakeBackend(gpus=gpus))
    sampler = Sampler(rig.ctx)
    outcome = await sampler.run()
    assert outcome.status == "ok" and "worker rss" in outcome.summary
    assert rig.value("gpu_utilization_percent", device="gpu1") == 12.5
    assert rig.value("gpu_memory_used_bytes", device="gpu0") == 6 * GIB
    assert rig.value("gpu_temperature_celsius", device="gpu0", sensor="gpu") == 71.0
    assert rig.value("gpu_throttle_reasons", device="gpu0", reason="sw_thermal_slowdown") == 1.0
    assert rig.value("ishowttsd_worker_rss_bytes") == rig.engine.rss
    assert sampler.max_temp_c() == 71.0
    [record] = read_jsonl(rig.ctx.log_dir / MEMORY_HISTORY)
    assert record["worker_pid"] == rig.engine.pid and record["gpu_memory_used_bytes"] == 8 * GIB
    assert MemorySample.from_mapping(record).rss_bytes == rig.engine.rss  # the leak detector can read it


async def test_partial_samples_leave_unknown_gauges_alone_and_say_why(tmp_path: Path) -> None:
    partial = gpu_sample(utilization_percent=None, missing={"utilization_percent": "Not Supported"})
    rig = make_rig(tmp_path, backend=FakeBackend(gpus=[partial]))
    outcome = await Sampler(rig.ctx).run()
    assert rig.value("gpu_utilization_percent", device="gpu0") is None  # no made-up 0
    assert rig.value("gpu_memory_used_bytes", device="gpu0") == 6 * GIB
    assert outcome.details["missing"] == {"gpu0": {"utilization_percent": "Not Supported"}}


async def test_a_throttle_reason_that_ends_goes_back_to_zero(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=FakeBackend(gpus=[gpu_sample(throttle_reasons=["hw_slowdown"])]))
    sampler = Sampler(rig.ctx)
    await sampler.run()
    rig.backend.gpus = [gpu_sample(throttle_reasons=[])]
    await sampler.run()
    assert rig.value("gpu_throttle_reasons", device="gpu0", reason="hw_slowdown") == 0.0


async def test_history_is_appended_one_whole_line_per_sample(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs={"memory_history_max": 3})
    sampler = Sampler(rig.ctx)
    for step in range(5):
        rig.now[0] = 1000.0 + step
        await sampler.run()
    lines = (rig.ctx.log_dir / MEMORY_HISTORY).read_text().splitlines()
    assert len(lines) == 5  # logrotate bounds the file; the leak job reads the newest memory_history_max
    records = read_jsonl(rig.ctx.log_dir / MEMORY_HISTORY)
    assert [r["timestamp_s"] for r in records] == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]


async def test_worker_without_memory_reading_is_recorded_without_gauges(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    rig.engine.rss, rig.engine.state = None, "starting"
    await Sampler(rig.ctx).run()
    assert rig.value("ishowttsd_worker_rss_bytes") == 0.0  # untouched default
    [record] = read_jsonl(rig.ctx.log_dir / MEMORY_HISTORY)
    assert record["rss_bytes"] is None and record["engine_state"] == "starting"


async def test_no_gpu_machine_samples_the_host_for_real(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, backend=NullBackend())
    outcome = await Sampler(rig.ctx).run()
    assert outcome.details["system_memory_used_bytes"] > 0
    assert outcome.details["gpu_memory_used_bytes"] is None
    assert "host used" in outcome.summary


def test_memory_record_and_summary_are_pure() -> None:
    engine = {"pid": 7, "state": "ready", "worker_rss_bytes": GIB, "cuda_allocated_bytes": None}
    system = dataclasses.replace(FakeBackend().system)
    record = memory_record(12.3456, [], system, engine)
    assert record["timestamp_s"] == 12.346 and record["gpu_allocated_bytes"] == 0
    assert summary_line(record, 40.0) == "worker rss 1.00 GiB, host used 8.00 GiB, gpu 40°C"
