"""Worker restart policy: restart with exponential backoff, or halt (gunicorn's WORKER_BOOT_ERROR idea).

Pure: restart history, the exit code and the current time are arguments.
A worker that exits with EXIT_BOOT_FAILURE (bad checkpoint, missing files) halts at once:
restarting it would fail the same way. Otherwise at most `max_restarts` within `window_s`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ishowttsd.engine.protocol import EXIT_BOOT_FAILURE

RestartAction = Literal["restart", "halt"]


@dataclass(frozen=True, slots=True)
class RestartDecision:
    """"restart" after `delay_s` seconds, or "halt" (report failed, stop trying); `reason` says why."""

    action: RestartAction
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """At most `max_restarts` restarts within `window_s`; delays base_delay_s·2^(k-1), capped.

    The first restart in a window is immediate (k = 0 recent restarts), the k-th waits
    min(max_delay_s, base_delay_s · 2^(k-1)).
    """

    max_restarts: int
    window_s: float
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0 or self.base_delay_s < 0 or self.max_delay_s < 0:
            raise ValueError(f"invalid restart policy {self}")

    def recent(self, restarts_s: Sequence[float], now_s: float) -> int:
        """How many past restarts fall within the window ending now."""
        return sum(1 for t in restarts_s if now_s - self.window_s < t <= now_s)

    def delay_for(self, recent_restarts: int) -> float:
        """Backoff before the next restart when `recent_restarts` already happened in the window."""
        if recent_restarts <= 0:
            return 0.0
        return min(self.max_delay_s, self.base_delay_s * 2.0 ** min(recent_restarts - 1, 62))

    def decide(
        self, restarts_s: Sequence[float], now_s: float, last_exit_code: int | None
    ) -> RestartDecision:
        """Restart (with backoff) or halt, given past restart times and the exit code of the worker."""
        if last_exit_code == EXIT_BOOT_FAILURE:
            return RestartDecision("halt", 0.0, f"worker failed to boot (exit code {EXIT_BOOT_FAILURE})")
        count = self.recent(restarts_s, now_s)
        if count >= self.max_restarts:
            return RestartDecision("halt", 0.0, f"{count} restarts within {self.window_s:.0f} s")
        delay = self.delay_for(count)
        return RestartDecision("restart", delay, f"restart {count + 1} of {self.max_restarts} in window")
