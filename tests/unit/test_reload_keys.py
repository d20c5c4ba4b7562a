"""reload.py: settings only a restart can change are kept at their running values and reported."""

from __future__ import annotations

from pathlib import Path

from ishowttsd.config import parse_config
from ishowttsd.reload import keep_restart_only, reloadable, restart_only_changes


def test_engine_devices_and_socket_changes_need_a_restart_and_are_kept() -> None:
    old = parse_config({"daemon": {"socket": "/run/a.sock"}, "engine": {"devices": ["cpu"], "nfe": 8}}, "old")
    new = parse_config({"daemon": {"socket": "/run/b.sock"}, "engine": {"devices": ["cpu", "cpu"], "nfe": 16}},
                       "new")
    assert restart_only_changes(old, new) == ["daemon.socket", "engine.devices"]
    kept = keep_restart_only(old, new)
    assert (kept.daemon.socket, kept.engine.devices) == (Path("/run/a.sock"), ("cpu",))
    assert kept.engine.nfe == 16  # everything else is applied


def test_nothing_to_report_when_only_reloadable_keys_change() -> None:
    old = parse_config({"engine": {"nfe": 8}}, "old")
    new = parse_config({"engine": {"nfe": 12}}, "new")
    assert restart_only_changes(old, new) == []
    assert keep_restart_only(old, new) == new


def test_the_gpu_backend_and_fault_injection_need_a_restart_but_lock_clocks_does_not() -> None:
    old = parse_config({}, "old")
    new = parse_config({"gpu": {"backend": "none", "sm_clock_mhz": 1200, "lock_clocks": False},
                        "daemon": {"fault_injection": True}}, "new")
    assert restart_only_changes(old, new) == ["daemon.fault_injection", "gpu.backend", "gpu.sm_clock_mhz"]
    kept = keep_restart_only(old, new)
    assert (kept.gpu.backend, kept.gpu.sm_clock_mhz, kept.daemon.fault_injection) == ("auto", 0, False)
    assert kept.gpu.lock_clocks is False


def test_a_body_limit_above_the_apis_ceiling_is_capped_there_and_reported() -> None:
    old = parse_config({}, "old")
    within = parse_config({"limits": {"max_body_bytes": 4096}}, "new")
    assert reloadable(old, within, 65536) == (within, [])
    above = parse_config({"limits": {"max_body_bytes": 100_000}}, "new")
    applied, needs_restart = reloadable(old, above, 65536)
    assert (applied.limits.max_body_bytes, needs_restart) == (65536, ["limits.max_body_bytes"])
