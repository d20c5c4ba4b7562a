"""Pure NVML decisions: throttle-reason bitmask names, error wording, lock verdicts.

No NVML calls here; the constants come from the injected pynvml module object, so the real
module and the test fake decode the same bits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ishowttsd.hw.base import ClockResult, ClockState

# pynvml constant suffix → the name the daemon reports. Newer drivers call these "clocks event
# reasons", older ones "clocks throttle reasons"; the bit values are the same.
REASON_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("GpuIdle", "gpu_idle"),
    ("ApplicationsClocksSetting", "applications_clocks_setting"),
    ("SwPowerCap", "sw_power_cap"),
    ("HwSlowdown", "hw_slowdown"),
    ("SyncBoost", "sync_boost"),
    ("SwThermalSlowdown", "sw_thermal_slowdown"),
    ("HwThermalSlowdown", "hw_thermal_slowdown"),
    ("HwPowerBrakeSlowdown", "hw_power_brake_slowdown"),
    ("DisplayClockSetting", "display_clock_setting"),
)
REASON_PREFIXES = ("nvmlClocksEventReason", "nvmlClocksThrottleReason")

# Reasons that legitimately hold the SM clock below a locked target (not a lost lock).
LIMITING_REASONS = frozenset({"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown",
                              "hw_thermal_slowdown", "hw_power_brake_slowdown", "sync_boost"})

ERROR_WORDING: dict[str, str] = {
    "NVML_ERROR_NOT_SUPPORTED": "not supported by this GPU/driver",
    "NVML_ERROR_NO_PERMISSION": "permission denied (needs root)",
    "NVML_ERROR_FUNCTION_NOT_FOUND": "not available in this driver's NVML",
    "NVML_ERROR_GPU_IS_LOST": "GPU is lost (fell off the bus)",
    "NVML_ERROR_UNINITIALIZED": "NVML not initialised",
    "NVML_ERROR_TIMEOUT": "NVML timed out",
}


def reason_bits(nvml: Any) -> dict[int, str]:
    """Bit value → reason name, from whichever constant family the module has."""
    bits: dict[int, str] = {}
    for suffix, name in REASON_SUFFIXES:
        names = [prefix + suffix for prefix in REASON_PREFIXES if hasattr(nvml, prefix + suffix)]
        values = [getattr(nvml, constant) for constant in names]
        if values:
            bits[int(values[0])] = name
    return bits


def decode_reasons(mask: int, bits: dict[int, str]) -> list[str]:
    """Names of the set bits, low bit first; bits without a name become 'unknown_0x...'."""
    names = [name for bit, name in sorted(bits.items()) if mask & bit]
    unknown = mask & ~sum(bits)
    names += [f"unknown_0x{1 << shift:x}" for shift in range(64) if unknown >> shift & 1]
    return names


def describe_error(nvml: Any, exc: BaseException) -> str:
    """Short human wording for an NVMLError (by return code), or the exception text."""
    code = getattr(exc, "value", None)
    for constant, wording in ERROR_WORDING.items():
        if code is not None and getattr(nvml, constant, object()) == code:
            return wording
    return f"NVML error: {exc}" if code is not None else f"{type(exc).__name__}: {exc}"


def snap_target(configured_mhz: int, supported_mhz: Iterable[int]) -> int:
    """The lock target: the configured clock snapped down to a supported one, else the maximum."""
    supported = sorted(set(supported_mhz))
    if not supported:
        return configured_mhz
    if configured_mhz <= 0:
        return supported[-1]
    at_or_below = [clock for clock in supported if clock <= configured_mhz]
    return at_or_below[-1] if at_or_below else supported[0]


def lock_verdict(target_mhz: int, sm_mhz: int, reasons: list[str],
                 tolerance_mhz: int) -> tuple[bool | None, str]:
    """Is the lock in force? True at target; None if a throttle/idle explains the gap; else False."""
    if abs(sm_mhz - target_mhz) <= tolerance_mhz:
        return True, f"SM clock {sm_mhz} MHz at locked target {target_mhz} MHz"
    limiting = sorted(LIMITING_REASONS.intersection(reasons))
    if sm_mhz < target_mhz and limiting:
        return None, f"SM clock {sm_mhz} MHz below target {target_mhz} MHz, limited by {', '.join(limiting)}"
    if sm_mhz < target_mhz and "gpu_idle" in reasons:
        return None, f"GPU idle at {sm_mhz} MHz: the lock to {target_mhz} MHz shows only under work"
    return False, f"SM clock {sm_mhz} MHz != target {target_mhz} MHz with no throttle reason: lock lost"


@dataclass(frozen=True)
class DeviceOutcome:
    """Result of one clock operation on one device; kind is ok/permission/unsupported/error."""

    kind: str
    value: Any = None
    message: str = ""


def outcome_for_error(nvml: Any, exc: BaseException) -> DeviceOutcome:
    kinds = {getattr(nvml, "NVML_ERROR_NO_PERMISSION", None): "permission",
             getattr(nvml, "NVML_ERROR_NOT_SUPPORTED", None): "unsupported"}
    return DeviceOutcome(kinds.get(getattr(exc, "value", None), "error"), None, describe_error(nvml, exc))


def combine_outcomes(action: str, outcomes: dict[str, DeviceOutcome]) -> ClockResult:
    """Per-device outcomes → one ClockResult (ok only if every device succeeded)."""
    kinds = {outcome.kind for outcome in outcomes.values()}
    applied = {label: outcome.value for label, outcome in outcomes.items() if outcome.kind == "ok"}
    lines = [f"{label}: {outcome.message}" for label, outcome in outcomes.items()]
    return ClockResult(ok=kinds == {"ok"}, applied=applied, message=f"{action}: " + "; ".join(lines),
                       not_applicable=kinds == {"unsupported"}, permission_denied="permission" in kinds)


@dataclass(frozen=True)
class DeviceLockState:
    locked: bool | None
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def combine_states(states: dict[str, DeviceLockState], persistence: bool | None) -> ClockState:
    """All devices locked → True; any lost → False; otherwise None (cannot tell)."""
    verdicts = {state.locked for state in states.values()}
    locked = False if False in verdicts else (True if verdicts == {True} else None)
    reasons = [f"{label}: {state.reason}" for label, state in states.items()]
    if persistence is False:
        reasons.append("persistence mode off: the driver drops locked clocks when the last client exits")
    details = {label: state.details for label, state in states.items()}
    return ClockState(locked=locked, details=details, reason="; ".join(reasons))
