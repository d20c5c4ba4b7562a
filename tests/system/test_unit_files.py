"""The unit file as systemd-analyze sees it: no warning at all, and a sandbox exposure score
within the documented threshold (docs/operations.md, "Privilege model")."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sysunits import PACKAGED_VENV, render_service_unit

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = (REPO / "systemd" / "ishowttsd.service").read_text()
SECURITY_THRESHOLD = 20  # systemd-analyze's 0-100 scale: exposure at most 2.0 ("OK")


@pytest.fixture
def unit_file(tmp_path: Path) -> Path:
    """The packaged unit with the venv path pointing at the test venv (verify needs ExecStart to
    exist); nothing else changed."""
    path = tmp_path / "ishowttsd.service"
    path.write_text(render_service_unit(TEMPLATE, Path(sys.prefix), read_paths=()))
    return path


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, check=False)


def test_rendering_changes_only_the_venv_path(unit_file: Path) -> None:
    assert unit_file.read_text().replace(sys.prefix, PACKAGED_VENV) == TEMPLATE


def test_verify_is_silent(unit_file: Path) -> None:
    result = analyze("verify", "--man=no", str(unit_file))
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_verify_catches_a_typo(unit_file: Path) -> None:
    """The check above can fail: a misspelt directive is reported on stderr."""
    unit_file.write_text(unit_file.read_text().replace("ProtectClock=", "ProtectClok="))
    assert "ProtectClok" in analyze("verify", "--man=no", str(unit_file)).stderr


def test_security_exposure_is_within_the_threshold(unit_file: Path) -> None:
    result = analyze("security", "--offline=true", f"--threshold={SECURITY_THRESHOLD}", str(unit_file))
    score = re.search(r"Overall exposure level for ishowttsd.service: (\d+\.\d+)", result.stdout)
    assert result.returncode == 0 and score, result.stdout + result.stderr
    print(f"exposure {score.group(1)}")
    assert float(score.group(1)) * 10 <= SECURITY_THRESHOLD


def test_no_gpu_breaking_hardening() -> None:
    """Options that would cut the daemon off from CUDA or torch's JIT stay off."""
    directives = dict(line.split("=", 1) for line in TEMPLATE.splitlines() if "=" in line and line[0] != "#")
    assert "MemoryDenyWriteExecute" not in directives and "PrivateDevices" not in directives
    assert "char-nvidia*" in directives["DeviceAllow"] and directives["DevicePolicy"] == "closed"
