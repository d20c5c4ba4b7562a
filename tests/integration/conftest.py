from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from daemon_harness import DaemonProcess, start_daemon


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models dir for all test daemons, so the tiny model is built once per session."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path) -> Iterator[DaemonProcess]:
    """A daemon shared by the read-mostly tests of one module."""
    directory = tmp_path_factory.mktemp("daemon")
    daemon = start_daemon(directory, models_dir)
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


@pytest.fixture
def fresh_daemon(tmp_path: Path, models_dir: Path) -> Iterator[DaemonProcess]:
    """A daemon of the test's own (for tests that kill, reload or stop it)."""
    daemon = start_daemon(tmp_path, models_dir)
    yield daemon
    daemon.stop()
