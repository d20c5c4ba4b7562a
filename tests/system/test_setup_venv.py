"""scripts/build-runtime-venv.sh (ishowttsd-setup-venv): flavour detection and the Jetson device
drop-in, against fake machine trees (--sysroot). Building a venv is covered by the package test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sysunits import render_service_unit

pytestmark = pytest.mark.system

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build-runtime-venv.sh"
ORIN_NODES = ("dev/nvhost-ctrl", "dev/nvhost-ctrl-gpu", "dev/nvmap", "dev/nvgpu/igpu0/ctrl")


def setup_venv(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", str(SCRIPT), *args], capture_output=True, text=True, check=False)


def fake_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize(("files", "flavour"), [
    ({}, "cpu"),
    ({"proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module 570.86\n"}, "cuda"),
    ({"etc/nv_tegra_release": "# R36 (release), REVISION: 4.3\n"}, "jetson"),
    ({"proc/device-tree/compatible": "nvidia,p3768-0000+p3767-0005\0nvidia,tegra234\0"}, "jetson"),
])
def test_flavour_is_detected_from_the_machine(tmp_path: Path, files: dict[str, str], flavour: str) -> None:
    result = setup_venv("--sysroot", str(fake_tree(tmp_path, files)), "--detect")
    assert (result.returncode, result.stdout.strip()) == (0, flavour)


def test_jetson_dropin_allows_the_boards_nodes_and_verifies(tmp_path: Path) -> None:
    board = fake_tree(tmp_path / "board", {node: "" for node in ORIN_NODES})
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    unit = unit_dir / "ishowttsd.service"
    template = (REPO / "systemd" / "ishowttsd.service").read_text()
    unit.write_text(render_service_unit(template, Path(sys.prefix), ()))
    dropin_dir = unit_dir / "ishowttsd.service.d"

    result = setup_venv("--sysroot", str(board), "--device-dropin", "--dropin-dir", str(dropin_dir))

    assert result.returncode == 0, result.stderr
    dropin = (dropin_dir / "50-jetson-devices.conf").read_text().splitlines()
    assert sorted(line for line in dropin if line.startswith("DeviceAllow=")) == sorted(
        f"DeviceAllow=/{node} rw" for node in ORIN_NODES)
    verify = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                            text=True, check=False)
    assert (verify.returncode, verify.stderr) == (0, "")


def test_no_dropin_without_jetson_nodes(tmp_path: Path) -> None:
    result = setup_venv("--sysroot", str(tmp_path), "--device-dropin", "--dropin-dir", str(tmp_path / "d"))
    assert result.returncode == 0 and not (tmp_path / "d").exists()


def test_unknown_options_are_refused() -> None:
    result = setup_venv("--flavor", "cpu")
    assert result.returncode != 0 and "unknown option --flavor" in result.stderr
