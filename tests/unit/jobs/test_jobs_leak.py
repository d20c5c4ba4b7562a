"""Leak job (R19, R25) and the recycler it acts through."""

from __future__ import annotations

import asyncio
from pathlib import Path

from test_jobs_support import GIB, FakeBackend, FakeEngine, Rig, gpu_sample, make_rig

from ishowttsd.config import JobsConfig
from ishowttsd.decide.leak import MIB
from ishowttsd.fsutil import append_jsonl_bounded
from ishowttsd.jobs.leak import LeakWatch, trend_thresholds, worker_history
from ishowttsd.jobs.recycle import MemoryPicture, Recycler, can_overlap
from ishowttsd.jobs.sampler import MEMORY_HISTORY, Sampler

FAST = {"leak_window": 20, "sample_interval_s": 30, "leak_slope_mib_per_hour": 64.0}


def write_history(path: Path, pid: int, start_s: float, mib_per_hour: float, count: int = 20) -> float:
    """`count` samples 30 s apart growing at mib_per_hour; returns the last timestamp."""
    for i in range(count):
        t = start_s + 30.0 * i
        rss = 700 * MIB + int(mib_per_hour * MIB * (30.0 * i) / 3600)
        append_jsonl_bounded(path, {"timestamp_s": t, "worker_pid": pid, "rss_bytes": rss}, 10_000)
    return start_s + 30.0 * (count - 1)


def leak_watch(rig: Rig) -> LeakWatch:
    sampler = Sampler(rig.ctx)
    return LeakWatch(rig.ctx, sampler, Recycler(rig.ctx, sampler))


async def test_a_growing_worker_is_recycled_with_a_leak_reason(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs=FAST)
    rig.now[0] = write_history(rig.ctx.log_dir / MEMORY_HISTORY, rig.engine.pid, 10_000.0, mib_per_hour=400)
    outcome = await leak_watch(rig).run()
    assert outcome.status == "ok" and outcome.details["recycled"] is True
    [(reason, overlap)] = rig.engine.recycles
    assert reason.split(" (")[0] == "leak"  # EngineClient counts tts_engine_restarts_total{reason="leak"}
    assert "rss_bytes trend" in reason and overlap is True  # CPU worker, plenty of host memory
    assert outcome.details["slope_mib_per_hour"] > 300


async def test_a_flat_worker_is_left_alone(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs=FAST)
    rig.now[0] = write_history(rig.ctx.log_dir / MEMORY_HISTORY, rig.engine.pid, 10_000.0, mib_per_hour=1)
    outcome = await leak_watch(rig).run()
    assert outcome.status == "ok" and outcome.summary.startswith("no leak") and rig.engine.recycles == []


async def test_a_fresh_worker_starts_a_fresh_trend(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs=FAST)
    rig.now[0] = write_history(rig.ctx.log_dir / MEMORY_HISTORY, rig.engine.pid, 10_000.0, mib_per_hour=400)
    watch = leak_watch(rig)
    await watch.run()
    second = await watch.run()  # the recycled worker (pid + 1) has no history yet
    assert len(rig.engine.recycles) == 1 and second.status == "ok" and "too few samples" in second.summary


async def test_a_ceiling_recycles_at_once(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs={**FAST, "rss_ceiling_mib": 512})
    rig.now[0] = write_history(rig.ctx.log_dir / MEMORY_HISTORY, rig.engine.pid, 10_000.0, 0, count=3)
    outcome = await leak_watch(rig).run()
    assert "above ceiling" in rig.engine.recycles[0][0] and outcome.details["recycled"] is True


async def test_no_judgement_while_the_engine_is_not_ready(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs=FAST, engine=FakeEngine(state="recycling"))
    assert (await leak_watch(rig).run()).status == "skipped"


async def test_a_failed_recycle_is_flagged(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, jobs=FAST, engine=FakeEngine(recycle_ok=False))
    rig.now[0] = write_history(rig.ctx.log_dir / MEMORY_HISTORY, rig.engine.pid, 10_000.0, mib_per_hour=400)
    outcome = await leak_watch(rig).run()
    assert outcome.status == "flagged" and "recycle failed" in outcome.summary


async def test_gpu_worker_without_room_for_two_drains_first(tmp_path: Path) -> None:
    full = gpu_sample(memory_used_bytes=75 * GIB, memory_total_bytes=80 * GIB)
    engine = FakeEngine(device="cuda:0", reserved=10 * GIB)
    rig = make_rig(tmp_path, backend=FakeBackend(gpus=[full]), engine=engine)
    ok, what = await Recycler(rig.ctx, Sampler(rig.ctx)).recycle("leak (test)")
    assert ok is True and engine.recycles == [("leak (test)", False)] and "overlap False" in what


async def test_only_one_recycle_at_a_time(tmp_path: Path) -> None:
    engine = FakeEngine(gate=asyncio.Event())
    rig = make_rig(tmp_path, engine=engine)
    recycler = Recycler(rig.ctx, Sampler(rig.ctx))
    first = asyncio.create_task(recycler.recycle("scheduled"))
    while not engine.recycles:
        await asyncio.sleep(0.01)
    second = await recycler.recycle("leak (x)")
    engine.gate.set()  # type: ignore[union-attr]
    assert second[0] is None and (await first)[0] is True and len(engine.recycles) == 1


async def test_scheduled_recycle_job(tmp_path: Path) -> None:
    rig = make_rig(tmp_path)
    outcome = await Recycler(rig.ctx, Sampler(rig.ctx)).scheduled()
    assert outcome.status == "ok" and rig.engine.recycles[0][0] == "scheduled"


def test_can_overlap_decides_from_memory() -> None:
    cpu = MemoryPicture("cpu", worker_rss=GIB, worker_gpu_reserved=None, gpu_free=None,
                        host_available=8 * GIB)
    assert can_overlap(cpu)[0] is True
    assert can_overlap(MemoryPicture("cpu", GIB, None, None, GIB))[0] is False  # no room for a second
    assert can_overlap(MemoryPicture("cuda:0", GIB, 4 * GIB, 20 * GIB, 8 * GIB))[0] is True
    assert can_overlap(MemoryPicture("cuda:0", GIB, 4 * GIB, 4 * GIB, 8 * GIB))[0] is False
    assert can_overlap(MemoryPicture("cuda:0", GIB, 4 * GIB, None, 8 * GIB)) == (
        False, "gpu memory unknown: draining first")
    assert can_overlap(MemoryPicture(None, None, None, None, None))[0] is True


def test_worker_history_keeps_only_the_current_worker_with_readings() -> None:
    records = [{"timestamp_s": 1, "worker_pid": 1, "rss_bytes": 5}, {"timestamp_s": 2, "worker_pid": 2,
               "rss_bytes": 6}, {"timestamp_s": 3, "worker_pid": 2, "rss_bytes": None}]
    assert [s.timestamp_s for s in worker_history(records, 2)] == [2.0]


def test_trend_needs_half_a_window_spanning_at_most_ten_minutes() -> None:
    assert trend_thresholds(JobsConfig()) == {"min_samples": 60, "min_span_s": 600.0}
    small = JobsConfig(leak_window=6, sample_interval_s=1)
    assert trend_thresholds(small) == {"min_samples": 3, "min_span_s": 3.0}
