"""Fixtures of the reliability suite (faults, hostile input, access, soak) and hypothesis profiles.

HYPOTHESIS_PROFILE=ci (default): a few hundred cases, minutes on 2 cores.
HYPOTHESIS_PROFILE=long: >= 10,000 cases in all (scripts/fuzz_long.sh).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, settings

sys.path.insert(0, str(Path(__file__).parent))

from reliability_support import DaemonProcess, start_daemon

# One hypothesis case talks to a real daemon over a socket: no per-case deadline, no shrinking of
# slow examples into timeouts, and no complaints that a module-scoped daemon is a fixture.
_COMMON = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow, HealthCheck.data_too_large]}
settings.register_profile("ci", max_examples=60, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("long", max_examples=1300, print_blob=True,
                          phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
                          **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One models dir for every daemon of this suite: the tiny model is built once."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture
def fresh_daemon(tmp_path: Path, models_dir: Path) -> Iterator[DaemonProcess]:
    daemon = start_daemon(tmp_path, models_dir)
    yield daemon
    daemon.stop()
