"""NVML errors against the real daemon: failed hardware reads are recorded with the reason, serving goes on.

The daemon wraps its GPU backend in hw.injected.FaultInjectingBackend when fault_injection is on
(jobs/wiring.py); a GPU of which nothing can be read shows in /v1/status "degraded" (and STATUS=) until
a sample reads it again. The wrapper alone: tests/unit/hw/test_hw_injected.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability_support import request, start_daemon, tts

from ishowttsd.hw.injected import INJECTED_DEVICE, NVML_ERROR

pytestmark = pytest.mark.slow


def run_sampler(sock: str) -> dict:
    reply = request(sock, "POST", "/v1/jobs/sampler/run", {})
    assert reply.status == 200, reply.body
    return reply.json()["job"]


def test_nvml_read_errors_are_recorded_with_the_reason_and_the_daemon_keeps_serving(
        tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, daemon={"fault_injection": True}, gpu={"backend": "none"})
    try:
        injected = request(daemon.socket, "POST", "/v1/admin/fault", {"kind": "nvml_error", "amount": 2})
        assert injected.status == 200, injected.body
        failed = [run_sampler(daemon.socket) for _ in range(2)]
        degraded = request(daemon.socket, "GET", "/v1/status").json()["degraded"]
        served = tts(daemon.socket).status
        recovered = run_sampler(daemon.socket)
        assert degraded == [f"gpu readings: {INJECTED_DEVICE}: {NVML_ERROR}"], degraded
        assert request(daemon.socket, "GET", "/v1/status").json()["degraded"] == []
        print(f"\nFIGURE nvml errors: 2 samples {[job['last_status'] for job in failed]} with missing "
              f"{failed[0]['details']['missing']}; tts meanwhile {served}; next sample missing "
              f"{recovered['details']['missing']}")
        assert all(job["last_status"] == "ok" for job in failed)
        assert all(set(job["details"]["missing"][INJECTED_DEVICE].values()) == {NVML_ERROR} for job in failed)
        assert served == 200 and recovered["details"]["missing"] == {}
    finally:
        daemon.stop()
