"""Whether a worker booting beside a serving one should be paused now (pure: times are arguments).

Two workers on one machine contend for its cores and its GPU: on the 2-core CPU box a tiny-model
request took 3.5-5 s instead of 0.1 s while a standby booted beside the worker serving it
(docs/benchmarks.md). So a boot beside a serving worker runs in that worker's idle time: paused
while the serving worker holds jobs, resumed when it is idle. A pause lasts at most `max_pause_s`,
after which the boot runs for at least `min_run_s` whatever the load, so a boot under steady
traffic still finishes (at ≥ min_run_s / (max_pause_s + min_run_s) of its speed).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class BootYield:
    max_pause_s: float = 5.0  # 0 = never pause
    min_run_s: float = 1.0

    def should_pause(self, serving_busy: bool, paused_for_s: float | None,
                     since_forced_resume_s: float | None) -> bool:
        """paused_for_s: how long it has been paused (None = running); since_forced_resume_s: how long
        ago a pause that hit max_pause_s ended (None = its last resume was not forced)."""
        if not serving_busy or self.max_pause_s <= 0:
            return False
        if paused_for_s is not None:
            return paused_for_s < self.max_pause_s
        return since_forced_resume_s is None or since_forced_resume_s >= self.min_run_s
