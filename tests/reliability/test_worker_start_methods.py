"""ISHOWTTSD_WORKER_START: the spawn escape hatch still serves and restarts; a bad value is refused loudly.

The default (forkserver) is what every other daemon of the suite runs; test_worker_faults.py checks
its workers are children of the fork server and that a dead fork server does not wedge restarts.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from reliability_support import DaemonProcess, start_daemon, tts, wait_for, worker_pid, write_config

SPAWN_BACK_S = 60.0  # a spawned worker imports torch + f5-tts again: 6-14 s on the 2-core box, more under load

pytestmark = pytest.mark.slow


def test_spawned_workers_are_children_of_the_daemon_and_are_restarted(tmp_path: Path, models_dir: Path) -> None:
    daemon = start_daemon(tmp_path, models_dir, env={"ISHOWTTSD_WORKER_START": "spawn"})
    try:
        assert daemon.process is not None
        pid = worker_pid(daemon)
        assert pid is not None and psutil.Process(pid).ppid() == daemon.process.pid
        assert not [child for child in psutil.Process(daemon.process.pid).children()
                    if "multiprocessing.forkserver" in " ".join(child.cmdline())]
        assert tts(daemon.socket).status == 200
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: worker_pid(daemon) not in (None, pid) and daemon.status()["engine"]["state"] == "ready",
                 SPAWN_BACK_S, "the respawned worker")
        print(f"\nFIGURE spawn escape hatch: engine back {time.monotonic() - killed_at:.2f}s after a SIGKILL; "
              f"load average {os.getloadavg()[0]:.1f}")
        assert tts(daemon.socket).status == 200
    finally:
        daemon.stop()


def test_an_unknown_start_method_stops_the_daemon_with_the_choices(tmp_path: Path, models_dir: Path) -> None:
    config = write_config(tmp_path, models_dir)
    daemon = DaemonProcess(config, str(tmp_path / "ishowttsd.sock"), tmp_path / "daemon.log",
                           {"ISHOWTTSD_WORKER_START": "fork"})
    daemon.start()
    assert daemon.process is not None
    code = daemon.process.wait(120)
    assert code != 0 and "ISHOWTTSD_WORKER_START='fork': expected one of forkserver, spawn" in daemon.log()
