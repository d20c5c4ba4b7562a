"""The memory jobs with two worker slots: one history line per worker, only the leaking worker recycled."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from test_jobs_leak import write_history
from test_jobs_support import FakeEngine, make_rig

from ishowttsd.decide.leak import MIB
from ishowttsd.fsutil import read_jsonl
from ishowttsd.jobs.context import engine_workers
from ishowttsd.jobs.leak import LeakWatch
from ishowttsd.jobs.recycle import Recycler
from ishowttsd.jobs.sampler import MEMORY_HISTORY, Sampler

FAST = {"leak_window": 20, "sample_interval_s": 30, "leak_slope_mib_per_hour": 64.0}


@dataclass
class TwoWorkerEngine(FakeEngine):
    """EngineClient's info() with `workers`; recycle(worker=i) replaces that worker's pid only."""

    pids: list[int] = field(default_factory=lambda: [5000, 6000])
    worker_recycles: list[int | None] = field(default_factory=list)

    def info(self) -> dict[str, object]:
        workers = [{"index": i, "configured_device": "cuda:" + str(i), "state": "ready", "pid": pid,
                    "device": f"cuda:{i}", "worker_rss_bytes": (700 + 100 * i) * MIB,
                    "cuda_allocated_bytes": 10 * MIB, "cuda_reserved_bytes": 20 * MIB}
                   for i, pid in enumerate(self.pids)]
        return {**super().info(), "pid": self.pids[0], "workers": workers}

    async def recycle(self, reason: str, overlap: bool = True, worker: int | None = None) -> bool:
        self.recycles.append((reason, overlap))
        self.worker_recycles.append(worker)
        for index in range(len(self.pids)) if worker is None else [worker]:
            self.pids[index] += 1
        return True


async def test_the_sampler_writes_one_line_and_labelled_gauges_per_worker(tmp_path: Path) -> None:
    engine = TwoWorkerEngine()
    rig = make_rig(tmp_path, engine=engine)
    await Sampler(rig.ctx).run()
    records = read_jsonl(rig.ctx.log_dir / MEMORY_HISTORY)
    assert [(r["worker"], r["worker_pid"], r["device"]) for r in records] == [(0, 5000, "cuda:0"),
                                                                            (1, 6000, "cuda:1")]
    assert rig.value("ishowttsd_worker_memory_bytes", worker="1", device="cuda:1", kind="rss") == 800 * MIB
    assert rig.value("ishowttsd_worker_rss_bytes") == engine.rss  # unlabelled: the top level (worker 0)


async def test_only_the_leaking_worker_is_recycled(tmp_path: Path) -> None:
    engine = TwoWorkerEngine()
    rig = make_rig(tmp_path, engine=engine, jobs=FAST)
    history = rig.ctx.log_dir / MEMORY_HISTORY
    write_history(history, 5000, 10_000.0, mib_per_hour=0)
    rig.now[0] = write_history(history, 6000, 10_000.0, mib_per_hour=400)
    sampler = Sampler(rig.ctx)
    outcome = await LeakWatch(rig.ctx, sampler, Recycler(rig.ctx, sampler)).run()
    assert outcome.details["recycled"] is True and outcome.details["worker"] == 1
    assert engine.worker_recycles == [1] and engine.pids == [5000, 6001]
    assert outcome.summary.startswith("leak: worker 1 recycled")


async def test_flat_workers_are_left_alone(tmp_path: Path) -> None:
    engine = TwoWorkerEngine()
    rig = make_rig(tmp_path, engine=engine, jobs=FAST)
    history = rig.ctx.log_dir / MEMORY_HISTORY
    write_history(history, 5000, 10_000.0, mib_per_hour=0)
    rig.now[0] = write_history(history, 6000, 10_000.0, mib_per_hour=1)
    sampler = Sampler(rig.ctx)
    outcome = await LeakWatch(rig.ctx, sampler, Recycler(rig.ctx, sampler)).run()
    assert outcome.status == "ok" and engine.worker_recycles == [] and set(outcome.details["workers"]) == {"0", "1"}


def test_engine_workers_falls_back_to_the_top_level() -> None:
    assert engine_workers({"pid": 7, "state": "ready"}) == [{"pid": 7, "state": "ready", "index": 0}]
    assert engine_workers({"pid": 7, "workers": [{"index": 3}]}) == [{"index": 3}]
