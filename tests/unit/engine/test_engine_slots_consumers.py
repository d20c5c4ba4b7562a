"""What the daemon's other parts see of several worker slots: STATUS=, the supervisor, engine_devices."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from test_engine_slots import VOICE, FakeHandle, engine, fake_workers, finish_all

from ishowttsd.config import Config, EngineConfig
from ishowttsd.daemon_parts import engine_devices
from ishowttsd.engine.client import SynthesisRequest
from ishowttsd.status import RecentTraffic, StatusSources, status_line
from ishowttsd.supervisor import Supervisor, SupervisorSettings

__all__ = ["fake_workers"]  # the autouse fixture: fake worker processes here too


class SilentNotifier:
    def watchdog_interval(self) -> float | None:
        return None

    def watchdog(self) -> None: ...

    def status(self, text: str) -> None: ...


def supervisor_for(client: Any) -> Supervisor:
    return Supervisor(client, SilentNotifier(), SupervisorSettings(),  # type: ignore[arg-type]
                      lambda: SynthesisRequest("Canary.", VOICE, 8, 1.0, 1), lambda: "")


async def test_status_line_says_which_worker_is_out_of_rotation() -> None:
    client, _ = engine(devices=("cpu", "bad"))
    await client.start()
    line = status_line(client, supervisor_for(client), RecentTraffic(), StatusSources())
    assert line.startswith("degraded: worker 1 (bad) out of rotation: no such device"), line


async def test_status_line_of_two_healthy_workers_is_serving() -> None:
    client, _ = engine()
    await client.start()
    assert status_line(client, supervisor_for(client), RecentTraffic(), StatusSources()).startswith("serving")


async def test_the_canary_runs_through_every_serving_worker() -> None:
    client, _ = engine()
    await client.start()
    supervisor = supervisor_for(client)
    canary = asyncio.create_task(supervisor.run_canary())
    await finish_all(200)
    assert await canary and supervisor.canary_failed_worker is None
    assert [w["jobs_finished"] for w in client.info()["workers"]] == [1, 1]  # type: ignore[index]


async def test_the_heartbeat_check_takes_the_quietest_worker() -> None:
    client, _ = engine()
    await client.start()
    quiet = client.slots[1].current
    assert quiet is not None
    quiet.last_pong_at -= 100
    supervisor = supervisor_for(client)
    assert supervisor._oldest_pong() == (1, quiet.last_pong_at)
    assert supervisor._suspect("worker silent (last pong 100 s ago)") == 1
    assert FakeHandle.live  # the fakes, not real workers, were started


@pytest.mark.parametrize(("devices", "visible", "gpus", "expected"), [
    ((), None, 2, ("auto",)),
    ("all", None, 2, ("cuda:0", "cuda:1")),
    ("all", "1", 2, ("cuda:0",)),
    ("all", None, 0, ("cpu",)),
    (("cpu", "cpu"), None, 0, ("cpu", "cpu")),
])
def test_engine_devices_counts_gpus_through_nvml(devices: Any, visible: str | None, gpus: int,
                                                 expected: tuple[str, ...]) -> None:
    class FakeNvml:
        def nvmlInit(self) -> None: ...

        def nvmlDeviceGetCount(self) -> int:
            return gpus

        def nvmlShutdown(self) -> None: ...

    config = Config(engine=EngineConfig(devices=devices))
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert engine_devices(config, environ, nvml_loader=FakeNvml) == expected


def test_engine_devices_without_nvml_is_one_cpu_worker() -> None:
    def no_driver() -> Any:
        raise ImportError("no pynvml")

    assert engine_devices(Config(engine=EngineConfig(devices="all")), {}, nvml_loader=no_driver) == ("cpu",)
