"""No GPU: host sampling only; every clock operation is 'not applicable' (a success)."""

from __future__ import annotations

from ishowttsd.hw.base import (
    NOT_APPLICABLE_MESSAGE,
    ClockResult,
    ClockState,
    GpuSample,
    SystemSample,
    SystemSampler,
    not_applicable_result,
)
from ishowttsd.hw.system import PsutilSystemSampler


class NullBackend:
    name = "none"

    def __init__(self, system: SystemSampler | None = None) -> None:
        self._system = system or PsutilSystemSampler()

    def devices(self) -> list[str]:
        return []

    def sample(self) -> list[GpuSample]:
        return []

    def system_sample(self) -> SystemSample:
        return self._system.sample()

    def lock_clocks(self) -> ClockResult:
        return not_applicable_result()

    def restore_clocks(self) -> ClockResult:
        return not_applicable_result()

    def verify_clocks(self) -> ClockState:
        return ClockState(locked=None, details={"not_applicable": True}, reason=NOT_APPLICABLE_MESSAGE)

    def persistence_mode(self) -> bool | None:
        return None

    def close(self) -> None:
        """Nothing to release."""
