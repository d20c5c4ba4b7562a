"""Test-only: a GPU backend wrapper whose next N samples fail the way NVML reads fail.

Installed around the real backend only with [daemon] fault_injection = true; `POST /v1/admin/fault
{"kind": "nvml_error", "amount": N}` calls fail_next(N). A failing sample keeps the backend
contract (base.py: reads degrade, never raise): every GPU the backend has comes back with no values
and each field's reason in `missing`, as NvmlBackend reports an NVMLError. On a host without a GPU
the failure is reported for one device named INJECTED_DEVICE, so the path can be tested anywhere.
Everything else is passed through to the wrapped backend.
"""

from __future__ import annotations

import threading
from typing import Any

from ishowttsd.hw.base import GpuBackend, GpuSample

INJECTED_DEVICE = "gpu-fault-injection"
NVML_ERROR = "NVMLError_Unknown: Unknown Error (fault injection)"
SAMPLE_FIELDS = ("utilization_percent", "memory_used_bytes", "memory_total_bytes", "temperatures",
                 "sm_clock_mhz", "mem_clock_mhz", "power_w", "throttle_reasons")


def failed_sample(device: str, reason: str = NVML_ERROR) -> GpuSample:
    """A sample where every read failed with `reason` (pure)."""
    return GpuSample(device=device, missing=dict.fromkeys(SAMPLE_FIELDS, reason))


class FaultInjectingBackend:
    """Wraps `inner`; sample() fails for the next `fail_next(n)` calls, then reads the real hardware again."""

    def __init__(self, inner: GpuBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self._failures_left = 0
        self._lock = threading.Lock()

    def fail_next(self, samples: int) -> None:
        with self._lock:
            self._failures_left = max(0, samples)

    def _take_failure(self) -> bool:
        with self._lock:
            failing = self._failures_left > 0
            self._failures_left -= failing
        return failing

    def sample(self) -> list[GpuSample]:
        if not self._take_failure():
            return self.inner.sample()
        return [failed_sample(device) for device in self.inner.devices() or [INJECTED_DEVICE]]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
