"""Warm standby workers (engine/standby.py) and the restart backoff, on fake worker processes.

HeldHandle is test_engine_slots' FakeHandle that can hold its Ready back (a standby still booting)
or fail its boot (a standby that cannot boot), as a test decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, ClassVar

import pytest
from test_engine_slots import FakeHandle, drain, engine, finish_all, request

from ishowttsd.engine import protocol as p
from ishowttsd.engine import slot as slot_module
from ishowttsd.engine.client import EngineClient, EngineLimits
from ishowttsd.engine.errors import EngineUnavailable


class HeldHandle(FakeHandle):
    hold_ready: ClassVar[bool] = False  # new workers wait for release() before answering Ready
    fail_boots: ClassVar[int] = 0  # the next N workers fail to boot

    def start(self) -> None:
        FakeHandle.live.append(self)
        if HeldHandle.fail_boots:
            HeldHandle.fail_boots -= 1
            self.loop.call_soon(self.on_message, self, p.BootFailed("out of memory (test)"))
            self.loop.call_soon(self.exit, p.EXIT_BOOT_FAILURE)
        elif not HeldHandle.hold_ready:
            self.release()

    def release(self) -> None:
        self.loop.call_soon(self.on_message, self, p.Ready("tiny", self.spec.device, "float32", False))


@pytest.fixture(autouse=True)
def held_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeHandle.live = []
    HeldHandle.hold_ready, HeldHandle.fail_boots = False, 0
    monkeypatch.setattr(slot_module, "WorkerHandle", HeldHandle)


async def with_standby(**limits: Any) -> tuple[EngineClient, list[tuple]]:
    client, seen = engine(devices=(), standby=True, **limits)
    client.events.standby_state = lambda index, device, state: seen.append(("standby", index, state))
    await client.start()
    await settle()
    return client, seen


async def settle(rounds: int = 10) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def standby_of(client: EngineClient) -> FakeHandle:
    handle = client.slots[0].standby.handle
    assert handle is not None, client.info()["standby"]
    return handle  # type: ignore[return-value]


async def test_a_standby_boots_once_the_worker_is_ready_and_takes_no_jobs() -> None:
    client, seen = await with_standby()
    standby, current = standby_of(client), client.current
    assert standby is not current and client.info()["standby"]["state"] == "ready"  # type: ignore[index]
    assert [e[2] for e in seen if e[0] == "standby"] == ["none", "booting", "ready"]
    task = asyncio.create_task(drain(client, request()))
    await settle()
    assert standby.jobs == [] and len(current.jobs) == 1  # type: ignore[union-attr]
    await finish_all()
    assert await task


async def test_without_standby_there_is_none() -> None:
    client, _ = engine(devices=())
    await client.start()
    await settle()
    assert client.slots[0].standby.handle is None and client.info()["standby"]["state"] == "off"  # type: ignore[index]
    assert len(FakeHandle.live) == 1


async def test_a_killed_worker_is_replaced_by_the_warm_standby_at_once() -> None:
    client, seen = await with_standby()
    standby, old = standby_of(client), client.current
    assert old is not None
    old.kill()
    await settle()
    assert client.current is standby and client.state == "ready"
    assert client.info()["restarts"] == 1 and ("restart", 0, "worker exited") in seen
    replacement = standby_of(client)  # a new standby behind the promoted one
    assert replacement not in (standby, old) and replacement.ready is not None


async def test_a_standby_still_booting_serves_once_it_is_warm() -> None:
    client, _ = engine(devices=(), standby=True)
    HeldHandle.hold_ready = True
    starting = asyncio.create_task(client.start())
    await settle()
    FakeHandle.live[0].release()  # type: ignore[attr-defined]
    await starting
    await settle()
    booting = standby_of(client)
    assert booting.ready is None
    client.current.kill()  # type: ignore[union-attr]
    await settle()
    assert client.current is booting and client.slots[0].state == "restarting"
    assert "standby still warming" in client.slots[0].detail and len(FakeHandle.live) == 2  # no third worker
    HeldHandle.hold_ready = False
    booting.release()  # type: ignore[attr-defined]
    await settle()
    assert client.slots[0].state == "ready" and client.is_ready()


async def test_a_recycle_switches_to_the_standby_and_starts_another() -> None:
    client, _ = await with_standby()
    standby, old = standby_of(client), client.current
    assert await client.recycle("leak (test)", overlap=False)  # overlap does not matter: no new boot
    await settle()
    assert client.current is standby and old.exited  # type: ignore[union-attr]
    assert standby_of(client) not in (standby, old) and len(FakeHandle.live) == 3


async def test_a_standby_of_an_old_spec_is_retired_not_used() -> None:
    client, _ = await with_standby()
    stale = standby_of(client)
    client.spec = dataclasses.replace(client.spec, nfe=16)  # a reload changing the engine
    assert await client.recycle("config reload")
    await settle()
    assert client.current is not stale and stale.exited and client.current.spec.nfe == 16  # type: ignore[union-attr]
    assert standby_of(client).spec.nfe == 16


async def test_a_standby_that_cannot_boot_is_reported_and_retried_only_at_a_recycle() -> None:
    client, seen = engine(devices=(), standby=True)
    client.events.standby_state = lambda index, device, state: seen.append(("standby", index, state))
    HeldHandle.fail_boots = 0
    await client.start()
    await settle()
    standby_of(client).kill()  # an unplanned exit: replaced
    HeldHandle.fail_boots = 1
    await settle()
    info = client.info()["standby"]
    assert info["state"] == "failed" and "out of memory (test)" in info["detail"], info  # type: ignore[index]
    assert client.state == "ready" and len(FakeHandle.live) == 3  # worker, killed standby, failed one: no loop
    assert await client.recycle("operator")
    await settle()
    assert client.info()["standby"]["state"] == "ready"  # type: ignore[index]


async def test_a_hung_or_stuck_standby_is_killed_and_replaced() -> None:
    client, _ = await with_standby(heartbeat_timeout_s=0.5)
    hung = standby_of(client)
    hung.last_pong_at -= 10
    hung.started_at -= 10
    client.slots[0].standby.ping(1)
    await settle()
    assert hung.exited and standby_of(client) is not hung
    HeldHandle.hold_ready = True
    standby_of(client).kill()
    await asyncio.sleep(1.1)  # the second unplanned exit in the window waits 1 s
    stuck = standby_of(client)
    stuck.started_at -= 10_000  # booting for longer than boot_timeout_s
    client.slots[0].standby.ping(2)
    await settle()
    assert stuck.exited


async def test_stopping_retires_the_standby_and_set_limits_switches_it() -> None:
    client, _ = await with_standby()
    standby = standby_of(client)
    client.set_limits(dataclasses.replace(client.limits, standby=False))
    await settle()
    assert standby.exited and client.info()["standby"]["state"] == "off"  # type: ignore[index]
    client.set_limits(dataclasses.replace(client.limits, standby=True))
    await settle()
    again = standby_of(client)
    await client.stop(1.0)
    assert again.exited and client.current.exited  # type: ignore[union-attr]


async def test_a_halted_slot_drops_its_standby() -> None:
    client, _ = await with_standby(max_restarts=0)
    standby = standby_of(client)
    client.current.kill()  # type: ignore[union-attr]
    await settle()
    assert client.state == "failed" and standby.exited and "restarts within" in client.detail


async def test_restarts_back_off_without_a_standby() -> None:
    client, seen = engine(devices=())
    assert isinstance(client.limits, EngineLimits)
    await client.start()
    client.current.kill()  # type: ignore[union-attr]
    await settle()
    first = client.current
    assert first is not None and client.state == "ready"  # the first restart in the window: at once
    killed_at = time.monotonic()
    first.kill()
    await settle()
    assert client.current is None and "next try in 1s" in client.slots[0].detail
    while client.current is None:
        await asyncio.sleep(0.02)
    assert time.monotonic() - killed_at >= 0.95
    await settle()
    assert client.state == "ready" and len([e for e in seen if e[0] == "restart"]) == 2


async def booting_standby() -> tuple[EngineClient, FakeHandle]:
    """A client whose worker is ready and whose standby is still booting (its Ready held back)."""
    client, _ = engine(devices=(), standby=True)
    HeldHandle.hold_ready = True
    starting = asyncio.create_task(client.start())
    await settle()
    client.current.release()  # type: ignore[union-attr]
    await starting
    await settle()
    return client, standby_of(client)


async def test_a_booting_standby_pauses_while_the_worker_serves_and_goes_on_when_idle() -> None:
    client, booting = await booting_standby()
    assert booting.paused_since is None  # nothing to yield to yet
    task = asyncio.create_task(drain(client, request()))
    await settle()
    assert booting.paused_since is not None  # the worker holds a job: the boot waits
    await finish_all()
    assert await task and booting.paused_since is None and booting.pauses == 1


async def test_a_pause_is_bounded_so_a_boot_under_steady_load_finishes() -> None:
    client, booting = await booting_standby()
    client.limits = dataclasses.replace(client.limits, boot_yield_max_pause_s=0.3)
    task = asyncio.create_task(drain(client, request()))  # never finished: a steady load
    await settle()
    assert booting.paused_since is not None
    await asyncio.sleep(0.6)  # past max_pause_s, within min_run_s: running again
    assert booting.paused_since is None and booting.running_s(time.monotonic()) > 0
    task.cancel()


async def test_a_promoted_boot_is_never_left_stopped() -> None:
    client, booting = await booting_standby()
    task = asyncio.create_task(drain(client, request()))
    await settle()
    assert booting.paused_since is not None
    client.current.kill()  # type: ignore[union-attr]
    await settle()
    assert client.current is booting and booting.paused_since is None  # the one the slot waits for
    with pytest.raises(EngineUnavailable):  # the killed worker's job (503 upstream)
        await task


async def test_a_retired_boot_is_resumed_first_so_it_can_read_retire() -> None:
    client, booting = await booting_standby()
    task = asyncio.create_task(drain(client, request()))
    await settle()
    assert booting.paused_since is not None
    await client.slots[0].standby.retire()
    assert booting.paused_since is None and booting.exited
    await finish_all()
    assert await task


async def test_a_recycles_new_worker_does_not_yield_the_recycle_is_needed() -> None:
    client, _ = engine(devices=())
    await client.start()
    old = client.current
    task = asyncio.create_task(drain(client, request()))
    await settle()
    HeldHandle.hold_ready = True
    recycling = asyncio.create_task(client.recycle("leak (test)"))
    await settle()
    new = FakeHandle.live[-1]
    assert new is not old and new.paused_since is None and new.pauses == 0  # the old one is busy, yet
    await finish_all()
    await task
    new.release()  # type: ignore[attr-defined]
    assert await recycling and client.current is new


async def test_a_recycle_that_takes_a_booting_standby_lets_it_boot_at_full_speed() -> None:
    client, booting = await booting_standby()
    task = asyncio.create_task(drain(client, request()))
    await settle()
    assert booting.paused_since is not None  # yielding while it was only a standby
    recycling = asyncio.create_task(client.recycle("leak (test)"))
    await settle()
    assert booting.paused_since is None  # now the slot waits for it
    await asyncio.sleep(0.3)
    assert booting.paused_since is None  # and it stays running though the old worker is still busy
    booting.release()  # type: ignore[attr-defined]
    await finish_all()
    assert await recycling and client.current is booting and await task
