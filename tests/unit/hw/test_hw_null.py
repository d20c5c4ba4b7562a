"""NullBackend: no devices, host sampling, clock operations not applicable."""

from __future__ import annotations

from ishowttsd.hw.base import GpuBackend, SystemSample
from ishowttsd.hw.null import NullBackend


class CountingSystem:
    def __init__(self) -> None:
        self.calls = 0

    def sample(self) -> SystemSample:
        self.calls += 1
        return SystemSample(cpu_percent=3.0)


def test_null_backend_has_no_gpu_and_reports_not_applicable() -> None:
    system = CountingSystem()
    backend = NullBackend(system=system)
    assert isinstance(backend, GpuBackend)
    assert backend.name == "none" and backend.devices() == [] and backend.sample() == []
    for result in (backend.lock_clocks(), backend.restore_clocks()):
        assert result.ok and result.not_applicable and not result.permission_denied
        assert result.message == "no GPU: clock locking not applicable"
    state = backend.verify_clocks()
    assert state.locked is None and state.details == {"not_applicable": True}
    assert backend.persistence_mode() is None
    assert backend.system_sample().cpu_percent == 3.0 and system.calls == 1
    backend.close()


def test_null_backend_defaults_to_the_live_machine() -> None:
    sample = NullBackend().system_sample()
    assert sample.memory_total_bytes and sample.memory_total_bytes > 0 and not sample.partial
