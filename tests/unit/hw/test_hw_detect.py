"""choose_backend: auto order NVML → Jetson → none, explicit choices, injected everything."""

from __future__ import annotations

import ctypes.util
import shutil
import subprocess
import sys
from pathlib import Path

import pynvml
import pytest
from fake_nvml import FakeGpu, FakeNvml

from ishowttsd.config import load_config
from ishowttsd.hw.base import HardwareUnavailable
from ishowttsd.hw.command import CommandRunner
from ishowttsd.hw.detect import backend_for_config, choose_backend
from ishowttsd.hw.jetson import JetsonBackend
from ishowttsd.hw.null import NullBackend
from ishowttsd.hw.nvml import NvmlBackend
from ishowttsd.hw.system import ProcSystemSampler

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "sysfs"
NO_TOOLS = CommandRunner(1.0, 0, which=lambda name: None)


def no_driver() -> FakeNvml:
    return FakeNvml([], init_error=pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)


def missing_module() -> FakeNvml:
    raise ImportError("No module named 'pynvml'")


@pytest.fixture
def orin_root(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURES / "agx_orin", tmp_path / "root"))


def test_auto_prefers_nvml_when_nvml_init_succeeds(orin_root: Path) -> None:
    nvml = FakeNvml([FakeGpu()])
    backend = choose_backend("auto", orin_root, lambda: nvml, NO_TOOLS)
    assert isinstance(backend, NvmlBackend) and backend.devices() == ["nvml:0"]
    backend.close()
    assert nvml.shutdown_calls == 1


def test_auto_falls_back_to_jetson_then_none(orin_root: Path, tmp_path: Path) -> None:
    jetson = choose_backend("auto", orin_root, no_driver, NO_TOOLS, state_dir=tmp_path / "state")
    assert isinstance(jetson, JetsonBackend) and jetson.devices() == ["jetson:17000000.ga10b"]
    assert jetson.system_sample().memory_total_bytes == 63426548 * 1024  # proc files of the fake root
    empty = tmp_path / "empty"
    empty.mkdir()
    assert isinstance(choose_backend("auto", empty, missing_module, NO_TOOLS), NullBackend)


def test_nvml_with_no_gpus_is_unavailable_and_shut_down(tmp_path: Path) -> None:
    nvml = FakeNvml([])
    with pytest.raises(HardwareUnavailable, match="reports no GPUs"):
        choose_backend("nvml", tmp_path, lambda: nvml, NO_TOOLS)
    assert nvml.shutdown_calls == 1
    assert isinstance(choose_backend("auto", tmp_path, lambda: FakeNvml([]), NO_TOOLS), NullBackend)


def test_explicit_choices_are_honoured_or_fail_clearly(orin_root: Path, tmp_path: Path) -> None:
    with pytest.raises(HardwareUnavailable, match="nvml: NVML unavailable: NVML Shared Library Not Found"):
        choose_backend("nvml", orin_root, no_driver, NO_TOOLS)
    with pytest.raises(HardwareUnavailable, match=r"nvml: pynvml .* not importable"):
        choose_backend("nvml", orin_root, missing_module, NO_TOOLS)
    with pytest.raises(HardwareUnavailable, match="no Jetson GPU devfreq node"):
        choose_backend("jetson", tmp_path, lambda: FakeNvml([FakeGpu()]), NO_TOOLS)
    assert isinstance(choose_backend("none", orin_root, lambda: FakeNvml([FakeGpu()]), NO_TOOLS), NullBackend)
    with pytest.raises(ValueError, match="unknown gpu backend 'cuda'"):
        choose_backend("cuda", orin_root)


def test_backend_for_config_uses_gpu_and_daemon_sections(orin_root: Path, tmp_path: Path) -> None:
    config = tmp_path / "ishowttsd.toml"
    config.write_text(f'[daemon]\nstate_dir = "{tmp_path / "state"}"\n'
                      f'[gpu]\nbackend = "jetson"\nsysfs_root = "{orin_root}"\nnvpmodel_mode = -1\n')
    backend = backend_for_config(load_config(config), runner=NO_TOOLS)
    assert isinstance(backend, JetsonBackend)
    assert backend.lock_clocks().ok
    assert (tmp_path / "state" / "jetson-clock-lock.json").exists()


def test_the_real_machine_without_a_driver_gives_none() -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("an NVIDIA driver is installed here")
    with pytest.raises(HardwareUnavailable, match="NVML unavailable"):
        choose_backend("nvml", Path("/"))
    backend = choose_backend("auto", Path("/"), runner=NO_TOOLS)
    assert backend.name in {"none", "jetson"}
    assert not isinstance(getattr(backend, "_system", None), ProcSystemSampler)  # psutil for "/"


def test_hw_modules_never_import_torch() -> None:
    code = ("import sys, ishowttsd.hw.detect, ishowttsd.hw.clockhelper; "
            "assert not {'torch', 'f5_tts', 'vocos'} & set(sys.modules), 'heavy import'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60, cwd=REPO)
