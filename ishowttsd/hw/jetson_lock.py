"""Jetson clock-lock decisions (pure) and the lock record kept in the state directory.

The record is written by the root helper BEFORE anything is changed and holds the originals
(devfreq min/max, nvpmodel mode, the jetson_clocks --store file) plus the lock target, so that
- a re-lock after drift never overwrites the originals with locked values,
- restore after a crash still knows what to put back,
- the unprivileged daemon can verify against the same target the helper applied.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ishowttsd.fsutil import atomic_write_text
from ishowttsd.hw.jetson_sysfs import DevfreqState

RECORD_NAME = "jetson-clock-lock.json"
STORE_NAME = "jetson_clocks.conf"


@dataclass(frozen=True)
class LockRecord:
    devfreq: str
    original_min_hz: int
    original_max_hz: int
    target_hz: int | None = None
    original_mode: int | None = None
    store_file: str | None = None

    def with_target(self, target_hz: int) -> LockRecord:
        return replace(self, target_hz=target_hz)


class LockRecordStore:
    """Loads/saves the record atomically under state_dir; a broken record reads as ValueError."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / RECORD_NAME
        self.store_file = self.state_dir / STORE_NAME

    def load(self) -> LockRecord | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            return LockRecord(**json.loads(text))
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: unreadable lock record: {exc}") from exc

    def ensure_dir(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)

    def save(self, record: LockRecord) -> None:
        self.ensure_dir()
        atomic_write_text(self.path, json.dumps(asdict(record), sort_keys=True) + "\n", mode=0o644)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self.store_file.unlink(missing_ok=True)


def devfreq_writes(current_max_hz: int, new_min_hz: int, new_max_hz: int) -> list[tuple[str, int]]:
    """Order the min/max writes so min never exceeds max in between (the kernel refuses that)."""
    if new_min_hz > current_max_hz:
        return [("max_freq", new_max_hz), ("min_freq", new_min_hz)]
    return [("min_freq", new_min_hz), ("max_freq", new_max_hz)]


def lock_target(state: DevfreqState, mode_applied: bool) -> int:
    """Highest available frequency, unless an nvpmodel mode we just set caps the GPU lower."""
    if mode_applied and state.max_hz < state.highest_hz:
        return state.max_hz
    return state.highest_hz


def lock_verdict(state: DevfreqState, target_hz: int) -> tuple[bool, str]:
    """Locked means min == max == current == target."""
    numbers = f"min={state.min_hz} max={state.max_hz} cur={state.cur_hz} target={target_hz} Hz"
    if state.min_hz == state.max_hz == state.cur_hz == target_hz:
        return True, f"GPU devfreq locked: {numbers}"
    return False, f"GPU devfreq not locked: {numbers}"


def restored_verdict(state: DevfreqState, record: LockRecord) -> tuple[bool, str]:
    """Restored means min/max are back at the recorded originals."""
    wanted = (record.original_min_hz, record.original_max_hz)
    if (state.min_hz, state.max_hz) == wanted:
        return True, f"GPU devfreq restored to min={wanted[0]} max={wanted[1]} Hz"
    return False, f"GPU devfreq min={state.min_hz} max={state.max_hz} Hz, originals were {wanted}"


def knobs_at(state: DevfreqState, target_hz: int) -> bool:
    """The knobs we write (min and max) are both at the target; cur_freq follows in the kernel."""
    return state.min_hz == state.max_hz == target_hz


def mode_verdict(locked: bool, reason: str, mode_id: int | None, mode_name: str,
                 wanted: int) -> tuple[bool, str]:
    """A lock in the wrong nvpmodel power mode is not the lock that was asked for."""
    if mode_id == wanted:
        return locked, reason
    return False, f"{reason}; nvpmodel mode {mode_id} ({mode_name}) != configured {wanted}"
