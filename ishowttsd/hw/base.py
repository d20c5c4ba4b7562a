"""What every GPU backend returns and the protocol the daemon calls.

Reads degrade: a backend never raises from sample()/system_sample()/verify_clocks(); a field it
cannot read stays None and `missing[field]` says why (`partial` is then True). Clock operations
report through ClockResult/ClockState instead of raising: `permission_denied` when the kernel or
driver refused (the daemon runs unprivileged; locking is the root helper's job), and
`not_applicable` when there is nothing to lock (no GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

T = TypeVar("T")


@dataclass(frozen=True)
class GpuSample:
    """One reading of one GPU. Units: percent, bytes, °C, MHz, W."""

    device: str
    utilization_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    temperatures: dict[str, float] = field(default_factory=dict)
    temperature_thresholds: dict[str, float] = field(default_factory=dict)
    sm_clock_mhz: float | None = None
    sm_clock_max_mhz: float | None = None
    mem_clock_mhz: float | None = None
    mem_clock_max_mhz: float | None = None
    power_w: float | None = None
    throttle_reasons: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)
    partial: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "partial", bool(self.missing))


@dataclass(frozen=True)
class SystemSample:
    """Host CPU/RAM/swap/load. memory_used = total - available (what is really taken)."""

    cpu_percent: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    swap_used_bytes: int | None = None
    swap_total_bytes: int | None = None
    load_average: tuple[float, float, float] | None = None
    missing: dict[str, str] = field(default_factory=dict)
    partial: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "partial", bool(self.missing))


@dataclass(frozen=True)
class ClockState:
    """Read-back of the clock lock. locked None = cannot tell (no GPU, unreadable, idle NVML GPU)."""

    locked: bool | None
    details: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


@dataclass(frozen=True)
class ClockResult:
    """Outcome of lock/restore. `applied` holds what was set (values per device/knob)."""

    ok: bool
    applied: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    not_applicable: bool = False
    permission_denied: bool = False


class HardwareUnavailable(Exception):
    """The requested backend cannot run here (no driver, no GPU node); the message says why."""


NOT_APPLICABLE_MESSAGE = "no GPU: clock locking not applicable"


def not_applicable_result() -> ClockResult:
    return ClockResult(ok=True, message=NOT_APPLICABLE_MESSAGE, not_applicable=True)


@runtime_checkable
class SystemSampler(Protocol):
    def sample(self) -> SystemSample: ...


@runtime_checkable
class GpuBackend(Protocol):
    """One hardware family. All methods are synchronous and bounded by their own timeouts."""

    name: str

    def devices(self) -> list[str]: ...

    def sample(self) -> list[GpuSample]: ...

    def system_sample(self) -> SystemSample: ...

    def lock_clocks(self) -> ClockResult: ...

    def verify_clocks(self) -> ClockState: ...

    def restore_clocks(self) -> ClockResult: ...

    def persistence_mode(self) -> bool | None: ...

    def close(self) -> None: ...


class FieldReader:
    """Collects field values; a read that raises one of `errors` records a reason instead."""

    def __init__(self, describe: Callable[[BaseException], str], errors: tuple[type[BaseException], ...]):
        self._describe = describe
        self._errors = errors
        self.values: dict[str, Any] = {}
        self.missing: dict[str, str] = {}

    def read(self, name: str, read: Callable[[], T]) -> T | None:
        """Store read() under `name`, or the reason it failed in `missing`; returns the value."""
        try:
            value = read()
        except self._errors as exc:
            self.missing[name] = self._describe(exc)
            return None
        self.values[name] = value
        return value

    def read_group(self, prefix: str, reads: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """Read several values into one dict; failures go to missing as 'prefix.key'."""
        group: dict[str, Any] = {}
        for key, read in reads.items():
            try:
                group[key] = read()
            except self._errors as exc:
                self.missing[f"{prefix}.{key}"] = self._describe(exc)
        return group
