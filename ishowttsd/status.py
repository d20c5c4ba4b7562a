"""The one-line STATUS= text and the recent-traffic figures behind it."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from ishowttsd.decide.stats import percentile
from ishowttsd.decide.watchdog import StatusSnapshot, render_status_line
from ishowttsd.engine.client import EngineClient
from ishowttsd.supervisor import Supervisor

WINDOW_S = 60.0
ENGINE_TO_SERVICE = {"starting": "starting", "restarting": "recycling", "recycling": "recycling",
                     "ready": "serving", "failed": "failed", "stopping": "degraded", "stopped": "failed"}


class RecentTraffic:
    """Finished syntheses of the last minute: request rate and RTF p95."""

    def __init__(self, window_s: float = WINDOW_S, maxlen: int = 10_000) -> None:
        self.window_s = window_s
        self._events: deque[tuple[float, float]] = deque(maxlen=maxlen)

    def record(self, audio_s: float, synth_s: float, now: float | None = None) -> None:
        if audio_s > 0:
            self._events.append((time.monotonic() if now is None else now, synth_s / audio_s))

    def _recent(self, now: float) -> list[float]:
        return [rtf for at, rtf in self._events if now - at <= self.window_s]

    def req_per_s(self, now: float | None = None) -> float:
        return len(self._recent(time.monotonic() if now is None else now)) / self.window_s

    def rtf_p95(self, now: float | None = None) -> float | None:
        recent = self._recent(time.monotonic() if now is None else now)
        return percentile(recent, 95) if recent else None


@dataclass
class StatusSources:
    """Extra facts other parts (hardware sampler, scheduler) publish for the status line."""

    gpu_temp_c: Callable[[], float | None] = lambda: None
    clocks_locked: Callable[[], bool | None] = lambda: None
    next_job: Callable[[], tuple[str, datetime] | None] = lambda: None
    degraded: list[str] = field(default_factory=list)
    storage: Callable[[], list[str]] = lambda: []  # "disk full: DIR" per directory that refuses writes

    def problems(self) -> list[str]:
        return [*self.degraded, *self.storage()]


def status_line(engine: EngineClient, supervisor: Supervisor, traffic: RecentTraffic,
                sources: StatusSources) -> str:
    state = ENGINE_TO_SERVICE.get(engine.state, "degraded")
    reason = engine.detail if state == "failed" else ""
    problems = [*engine.problems(), *sources.problems()]  # engine: workers out of rotation
    if state == "serving" and (problems or not supervisor.last_decision.pet):
        state, reason = "degraded", "; ".join(problems) or supervisor.last_decision.reason
    next_job = sources.next_job()
    return render_status_line(StatusSnapshot(
        state=state, reason=reason, req_per_s=traffic.req_per_s(), rtf_p95=traffic.rtf_p95(),
        gpu_temp_c=sources.gpu_temp_c(), clocks_locked=sources.clocks_locked(),
        next_job=next_job[0] if next_job else None, next_job_at=next_job[1] if next_job else None,
        now=datetime.now(tz=next_job[1].tzinfo) if next_job else None))
