"""Watchdog decision (principle 3: alive means answering) and the one-line systemd STATUS= text.

Pure: every timestamp, the engine state and the current time are arguments (monotonic seconds).
The supervisor thread calls `should_pet` every few seconds and acts on the result:
pet → sd_notify WATCHDOG=1; action "recycle_worker" → drain + restart the engine worker;
action "give_up" → stop petting, so systemd's WatchdogSec restarts the whole unit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

PetAction = Literal["none", "recycle_worker", "give_up"]

# Engine states the client reports → the phase the watchdog reasons about.
ENGINE_PHASES: dict[str, str] = {
    "starting": "booting",
    "warming": "booting",
    "restarting": "booting",
    "recycling": "booting",
    "ready": "ready",
    "failed": "failed",
}


@dataclass(frozen=True, slots=True)
class PetDecision:
    """Whether to feed systemd's watchdog now, why, and what the supervisor should do."""

    pet: bool
    reason: str
    action: PetAction = "none"


@dataclass(frozen=True, slots=True)
class Liveness:
    """The facts one decision is made of (ages in seconds; None = never seen)."""

    loop_age_s: float
    pong_age_s: float | None
    canary_age_s: float | None
    phase: str
    grace_left_s: float
    loop_max_age_s: float
    worker_max_age_s: float
    canary_max_age_s: float
    failed_recoveries: int
    max_failed_recoveries: int


def _age(now_s: float, last_s: float | None) -> float | None:
    return None if last_s is None else now_s - last_s


def _stale(age: float | None, max_age: float) -> bool:
    return age is None or age > max_age


def _fmt(age: float | None) -> str:
    return "never" if age is None else f"{age:.0f} s ago"


# (rule applies?, decision) — the first rule that applies wins; the last one always applies.
_RULES: tuple[tuple[Callable[[Liveness], bool], Callable[[Liveness], PetDecision]], ...] = (
    (lambda f: f.loop_age_s > f.loop_max_age_s,
     lambda f: PetDecision(False, f"event loop stalled (last beat {f.loop_age_s:.0f} s ago)")),
    (lambda f: f.failed_recoveries >= f.max_failed_recoveries,
     lambda f: PetDecision(False, f"{f.failed_recoveries} failed recoveries: giving up", "give_up")),
    (lambda f: f.phase == "failed",
     lambda f: PetDecision(False, "engine failed: giving up", "give_up")),
    (lambda f: f.phase == "booting" and f.grace_left_s > 0,
     lambda f: PetDecision(True, f"engine starting ({f.grace_left_s:.0f} s of boot grace left)")),
    (lambda f: f.phase == "booting",
     lambda f: PetDecision(True, "engine boot exceeded its grace period", "recycle_worker")),
    (lambda f: _stale(f.pong_age_s, f.worker_max_age_s),
     lambda f: PetDecision(True, f"worker silent (last pong {_fmt(f.pong_age_s)})", "recycle_worker")),
    (lambda f: f.canary_age_s is None and f.grace_left_s > 0,
     lambda f: PetDecision(True, "engine ready, first canary pending")),
    (lambda f: _stale(f.canary_age_s, f.canary_max_age_s),
     lambda f: PetDecision(True, f"canary stale (last success {_fmt(f.canary_age_s)})", "recycle_worker")),
    (lambda f: True,
     lambda f: PetDecision(True, "healthy")),
)  # fmt: skip


def decide_pet(facts: Liveness) -> PetDecision:
    """Apply the rule table to `facts`."""
    return next(decide(facts) for applies, decide in _RULES if applies(facts))


def should_pet(
    now_s: float,
    loop_last_beat_s: float,
    worker_last_pong_s: float | None,
    canary_last_ok_s: float | None,
    engine_state: str,
    *,
    loop_max_age_s: float,
    worker_max_age_s: float,
    canary_max_age_s: float,
    boot_grace_until_s: float,
    failed_recoveries: int,
    max_failed_recoveries: int,
) -> PetDecision:
    """Pet only while the loop is fresh and the engine is healthy or legitimately booting.

    Booting (starting/warming/restarting/recycling) is fine until `boot_grace_until_s`; after that,
    and for a ready engine with a stale pong or canary, the action is "recycle_worker" while still
    petting. `failed_recoveries` >= `max_failed_recoveries` or a failed engine → "give_up", no pet.
    A ready engine whose first canary is still pending (None) is fine within the boot grace.
    """
    if engine_state not in ENGINE_PHASES:
        raise ValueError(f"unknown engine state {engine_state!r}; expected one of {sorted(ENGINE_PHASES)}")
    facts = Liveness(
        loop_age_s=now_s - loop_last_beat_s,
        pong_age_s=_age(now_s, worker_last_pong_s),
        canary_age_s=_age(now_s, canary_last_ok_s),
        phase=ENGINE_PHASES[engine_state],
        grace_left_s=boot_grace_until_s - now_s,
        loop_max_age_s=loop_max_age_s,
        worker_max_age_s=worker_max_age_s,
        canary_max_age_s=canary_max_age_s,
        failed_recoveries=failed_recoveries,
        max_failed_recoveries=max_failed_recoveries,
    )
    return decide_pet(facts)


# ---------------------------------------------------------------- STATUS= line

ServiceState = Literal["starting", "warming", "serving", "recycling", "degraded", "failed"]

_STATE_TEXT: dict[str, str] = {
    "starting": "starting",
    "warming": "warming",
    "serving": "serving",
    "recycling": "recycling engine",
    "degraded": "degraded",
    "failed": "failed",
}


@dataclass(frozen=True, slots=True)
class StatusSnapshot:
    """What the status line shows; None fields are left out (clocks: "clocks n/a")."""

    state: ServiceState
    reason: str = ""  # shown as "degraded: <reason>" / "failed: <reason>"
    req_per_s: float | None = None
    rtf_p95: float | None = None
    gpu_temp_c: float | None = None
    clocks_locked: bool | None = None
    next_job: str | None = None
    next_job_at: datetime | None = None
    now: datetime | None = None  # to print the weekday when the next job is not today


_CLOCK_TEXT: dict[bool | None, str] = {True: "clocks locked", False: "clocks unlocked", None: "clocks n/a"}


def _one_line(text: str) -> str:
    """Collapse all whitespace (newlines included) so the result stays one STATUS= line."""
    return " ".join(text.split())


def _state_part(s: StatusSnapshot) -> str:
    text, reason = _STATE_TEXT[s.state], _one_line(s.reason)
    return f"{text}: {reason}" if reason and s.state in ("degraded", "failed") else text


def _next_job_part(s: StatusSnapshot) -> str | None:
    name = _one_line(s.next_job or "")
    if not name:
        return None
    if s.next_job_at is None:
        return f"next job: {name}"
    same_day = s.now is None or s.now.date() == s.next_job_at.date()
    return f"next job: {name} {s.next_job_at.strftime('%H:%M' if same_day else '%a %H:%M')}"


def _optional(value: float | None, template: str) -> str | None:
    return None if value is None else template.format(value)


def render_status_line(snapshot: StatusSnapshot) -> str:
    """E.g. "serving, 2.1 req/s, rtf p95 0.03, gpu 61°C, clocks locked, next job: benchmark 03:00"."""
    parts = (
        _state_part(snapshot),
        _optional(snapshot.req_per_s, "{:.1f} req/s"),
        _optional(snapshot.rtf_p95, "rtf p95 {:.2f}"),
        _optional(snapshot.gpu_temp_c, "gpu {:.0f}°C"),
        _CLOCK_TEXT[snapshot.clocks_locked],
        _next_job_part(snapshot),
    )
    return ", ".join(p for p in parts if p)
