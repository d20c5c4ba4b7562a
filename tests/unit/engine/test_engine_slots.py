"""EngineClient with several worker slots, on fake worker processes (no torch, no subprocess).

FakeHandle stands in for engine/handle.py's WorkerHandle: it answers Ready on start (or BootFailed
+ exit 3 for the device "bad"), records the jobs it is sent, and the test finishes them.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from ishowttsd.engine import protocol as p
from ishowttsd.engine import slot as slot_module
from ishowttsd.engine.client import EngineClient, EngineEvents, EngineLimits, SynthesisRequest
from ishowttsd.engine.errors import EngineUnavailable
from ishowttsd.engine.spec import EngineSpec

VOICE = p.VoiceRef("default", "/nonexistent.wav", "ref")
_pids = itertools.count(1000)


class FakeHandle:
    live: ClassVar[list[FakeHandle]] = []

    def __init__(self, spec: EngineSpec, loop: asyncio.AbstractEventLoop,
                 on_message: Callable[[Any, object], None], on_exit: Callable[[Any, int | None], None]) -> None:
        self.spec, self.loop, self.on_message, self.on_exit = spec, loop, on_message, on_exit
        self.pid = next(_pids)
        self.ready: p.Ready | None = None
        self.boot_failure, self.retiring, self.exited = "", False, False
        self.last_pong: p.Pong | None = None
        self.last_pong_at = self.started_at = time.monotonic()
        self.jobs: list[p.Job] = []

    def start(self) -> None:
        FakeHandle.live.append(self)
        if self.spec.device == "bad":
            self.loop.call_soon(self.on_message, self, p.BootFailed("no such device"))
            self.loop.call_soon(self.exit, p.EXIT_BOOT_FAILURE)
        else:
            self.loop.call_soon(self.on_message, self, p.Ready("tiny", self.spec.device, "float32", False))

    def send(self, message: object) -> bool:
        if self.exited:
            return False
        if isinstance(message, p.Job):
            self.jobs.append(message)
        if isinstance(message, p.Retire):
            self.loop.call_soon(self.exit, 0)
        return True

    def finish(self, job: p.Job) -> None:
        self.on_message(self, p.Chunk(job.job_id, 0, b"\0\0"))
        self.on_message(self, p.Done(job.job_id, 1, 0.01))

    def exit(self, code: int | None) -> None:
        if not self.exited:
            self.exited = True
            self.on_exit(self, code)

    def kill(self) -> None:
        self.loop.call_soon(self.exit, -9)

    # pause/resume/paused_for/running_s: as WorkerHandle's, without the signals
    paused_since: float | None = None
    paused_total_s = 0.0
    pauses = 0

    def pause(self) -> None:
        if self.paused_since is None and not self.exited:
            self.paused_since, self.pauses = time.monotonic(), self.pauses + 1

    def resume(self) -> None:
        if self.paused_since is not None:
            self.paused_total_s += time.monotonic() - self.paused_since
            self.paused_since = None

    def paused_for(self, now: float) -> float | None:
        return None if self.paused_since is None else now - self.paused_since

    def running_s(self, now: float) -> float:
        return now - self.started_at - self.paused_total_s - (self.paused_for(now) or 0.0)

    def record_pong(self, pong: p.Pong) -> None:
        self.last_pong = pong

    async def wait_exit(self, timeout_s: float) -> bool:
        await asyncio.sleep(0)
        return self.exited


@pytest.fixture(autouse=True)
def fake_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeHandle.live = []
    monkeypatch.setattr(slot_module, "WorkerHandle", FakeHandle)


def engine(devices: tuple[str, ...] = ("cpu", "cpu"), **limits: Any) -> tuple[EngineClient, list[tuple]]:
    seen: list[tuple] = []
    events = EngineEvents(state_changed=lambda s, d: seen.append(("engine", s, d)),
                          worker_state=lambda i, dev, s: seen.append(("worker", i, s)),
                          worker_restarted=lambda i, dev, r: seen.append(("restart", i, r)))
    spec = EngineSpec(model="tiny", cache_dir="/tmp", max_batch=2)
    return EngineClient(spec, EngineLimits(boot_timeout_s=5, **limits), events, devices=devices), seen


def request(text: str = "Hello.", worker: int | None = None) -> SynthesisRequest:
    return SynthesisRequest(text, VOICE, 8, 1.0, 1, worker=worker)


async def drain(client: EngineClient, req: SynthesisRequest) -> bytes:
    return b"".join([piece async for piece in client.synthesize(req)])


async def finish_all(rounds: int = 50) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)
        for handle in FakeHandle.live:
            while handle.jobs and not handle.exited:
                handle.finish(handle.jobs.pop(0))


async def test_one_device_keeps_the_single_worker_states() -> None:
    client, seen = engine(devices=())
    await client.start()
    assert [e for e in seen if e[0] == "engine"] == [("engine", "starting", "loading model"), ("engine", "ready", "")]
    assert client.current is client.slots[0].current and client.problems() == []
    assert client.info()["workers"][0]["configured_device"] == "auto"  # the spec's device
    client.spec = EngineSpec(model="tiny", cache_dir="/tmp", device="cpu")  # a reload changing engine.device
    assert await client.recycle("config reload") and client.slots[0].current.spec.device == "cpu"  # type: ignore[union-attr]


async def test_jobs_spread_over_both_slots() -> None:
    client, _ = engine()
    await client.start()
    tasks = [asyncio.create_task(drain(client, request())) for _ in range(8)]
    await asyncio.sleep(0)
    await finish_all()
    assert all(await asyncio.gather(*tasks))
    finished = [w["jobs_finished"] for w in client.info()["workers"]]  # type: ignore[index]
    assert sum(finished) == 8 and min(finished) >= 2, finished


async def test_a_pinned_request_runs_on_its_worker_only() -> None:
    client, _ = engine()
    await client.start()
    task = asyncio.create_task(drain(client, request(worker=1)))
    await asyncio.sleep(0)
    assert [len(h.jobs) for h in FakeHandle.live] == [0, 1]
    await finish_all()
    assert await task


async def test_a_device_that_cannot_boot_is_out_of_rotation_while_the_other_serves() -> None:
    client, seen = engine(devices=("cpu", "bad"))
    await client.start()
    assert client.state == "ready" and client.is_ready()
    assert client.problems() == ["worker 1 (bad) out of rotation: no such device"]
    assert client.info()["workers"][1]["in_rotation"] is False  # type: ignore[index]
    with pytest.raises(EngineUnavailable):
        await drain(client, request(worker=1))
    task = asyncio.create_task(drain(client, request()))
    await finish_all()
    assert await task and ("worker", 1, "failed") in seen


async def test_the_engine_fails_only_when_every_slot_has() -> None:
    client, _ = engine(devices=("bad", "bad"))
    await client.start()
    assert client.state == "failed" and client.detail.startswith("every worker out of rotation")
    with pytest.raises(EngineUnavailable):
        await drain(client, request())


async def test_a_killed_worker_restarts_in_its_own_slot() -> None:
    client, seen = engine()
    await client.start()
    first, second = client.slots[0].current, client.slots[1].current
    assert first is not None and second is not None
    second.kill()
    await asyncio.sleep(0.01)
    assert client.slots[1].current is not second and client.slots[0].current is first
    assert ("restart", 1, "worker exited") in seen and client.state == "ready"
    assert len(client.restarts) == 1 and client.info()["workers"][1]["restarts"] == 1  # type: ignore[index]


async def test_a_slot_out_of_restarts_leaves_rotation_alone() -> None:
    client, _ = engine(max_restarts=1)
    await client.start()
    for _ in range(2):
        handle = client.slots[1].current
        assert handle is not None
        handle.kill()
        await asyncio.sleep(0.01)
    assert client.slots[1].state == "failed" and "restarts within" in client.slots[1].detail
    assert client.state == "ready" and client.slots[0].state == "ready"


async def test_recycle_one_worker_or_every_worker_one_at_a_time() -> None:
    client, seen = engine()
    await client.start()
    before = [s.current for s in client.slots]
    assert await client.recycle("leak (test)", worker=1)
    assert client.slots[0].current is before[0] and client.slots[1].current is not before[1]
    assert await client.recycle("config reload")
    recycling = [e for e in seen if e[0] == "worker" and e[2] == "recycling"]
    assert [e[1] for e in recycling] == [1, 0, 1]
    states = [e for e in seen if e[0] == "worker"]
    for at, event in enumerate(states):  # never two slots recycling at once
        if event[2] == "recycling":
            assert next(e for e in states[at + 1:] if e[1] == event[1])[2] == "ready"
    assert not await client.recycle("nope", worker=5)


async def test_a_failed_slot_comes_back_when_recycled_by_name() -> None:
    client, _ = engine(devices=("cpu", "bad"))
    await client.start()
    assert await client.recycle("all") and client.slots[1].state == "failed"  # not touched
    client.slots[1].configured = "cpu"  # stands for the operator fixing the device
    assert await client.recycle("retry", worker=1)
    assert client.slots[1].state == "ready" and client.problems() == []
