"""Fixtures of the reliability suite (faults, hostile input, access, soak)."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_target import Target
from reliability_support import PLAIN_LIMITS, SERVICE_GROUP, DaemonProcess, start_daemon, wait_for


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models dir for every daemon of this suite: the tiny model is built once."""
    return tmp_path_factory.mktemp("models")




@pytest.fixture(scope="session")
def socket_dir() -> Iterator[Path]:
    """A socket directory every uid can traverse (pytest's own tmp dirs are 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="ishowttsd-rel-"))
    directory.chmod(0o711)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def plain_daemon(tmp_path_factory: pytest.TempPathFactory, models_dir: Path,
                 socket_dir: Path) -> Iterator[DaemonProcess]:
    """One daemon with production settings (no fault injection) shared by the access, fuzz and soak
    modules: its socket is 0660 with SERVICE_GROUP in a directory others can traverse."""
    daemon = start_daemon(tmp_path_factory.mktemp("plain"), models_dir,
                          daemon={"socket": str(socket_dir / "ishowttsd.sock"), "socket_group": SERVICE_GROUP},
                          engine={"nfe": 2, "heartbeat_timeout_s": 30.0}, limits=PLAIN_LIMITS)
    yield daemon
    assert daemon.stop() == 0, daemon.log()[-3000:]


@pytest.fixture(scope="module")
def target(plain_daemon: DaemonProcess) -> Target:
    """plain_daemon watched case by case by one test module (module scope: each module its own baseline)."""
    root = plain_daemon.config.parent
    found = Target(plain_daemon, root, int(plain_daemon.status()["engine"]["pid"]))
    wait_for(lambda: list((root / "state" / "config-backups").glob("*-boot.json")), 60, "the boot backup")
    found.baseline = found.tree()
    return found
