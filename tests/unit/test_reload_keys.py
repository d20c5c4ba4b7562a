"""reload.py: settings only a restart can change are kept at their running values and reported."""

from __future__ import annotations

from pathlib import Path

from ishowttsd.config import parse_config
from ishowttsd.reload import keep_restart_only, restart_only_changes


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
