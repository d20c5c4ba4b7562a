"""Pick the GPU backend: auto = NVML if nvmlInit succeeds, else Jetson if a GPU devfreq node
exists under the sysfs root, else none. An explicit choice is honoured or fails with
HardwareUnavailable saying why. Everything (root, NVML module loader, command runner) is injected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ishowttsd.hw.base import GpuBackend, HardwareUnavailable, SystemSampler
from ishowttsd.hw.command import CommandRunner
from ishowttsd.hw.jetson import JetsonBackend
from ishowttsd.hw.null import NullBackend
from ishowttsd.hw.nvml import NvmlBackend
from ishowttsd.hw.sysfs import Sysfs
from ishowttsd.hw.system import system_sampler_for

AUTO_ORDER = ("nvml", "jetson", "none")
DEFAULT_STATE_DIR = Path("/var/lib/ishowttsd")


def load_pynvml() -> Any:
    """The real pynvml module (package nvidia-ml-py); imported only when NVML is tried."""
    import pynvml

    return pynvml


@dataclass(frozen=True)
class DetectContext:
    sysfs: Sysfs
    nvml_loader: Callable[[], Any]
    runner: CommandRunner
    state_dir: Path
    nvpmodel_mode: int
    sm_clock_mhz: int
    system: SystemSampler


def _nvml(context: DetectContext) -> GpuBackend:
    try:
        nvml = context.nvml_loader()
    except ImportError as exc:
        raise HardwareUnavailable(f"nvml: pynvml (nvidia-ml-py) not importable: {exc}") from exc
    try:
        backend = NvmlBackend(nvml, sm_clock_mhz=context.sm_clock_mhz, system=context.system)
    except nvml.NVMLError as exc:
        raise HardwareUnavailable(f"nvml: NVML unavailable: {exc}") from exc
    if not backend.devices():
        backend.close()
        raise HardwareUnavailable("nvml: the NVIDIA driver reports no GPUs")
    return backend


def _jetson(context: DetectContext) -> GpuBackend:
    return JetsonBackend(context.sysfs, context.runner, context.state_dir, context.nvpmodel_mode,
                         system=context.system)


def _none(context: DetectContext) -> GpuBackend:
    return NullBackend(system=context.system)


BUILDERS: dict[str, Callable[[DetectContext], GpuBackend]] = {"nvml": _nvml, "jetson": _jetson, "none": _none}


def choose_backend(gpu_cfg_backend: str, sysfs_root: Path, nvml_loader: Callable[[], Any] = load_pynvml,
                   runner: CommandRunner | None = None, *, state_dir: Path = DEFAULT_STATE_DIR,
                   nvpmodel_mode: int = 0, sm_clock_mhz: int = 0) -> GpuBackend:
    """Build the configured backend ('auto', 'nvml', 'jetson', 'none')."""
    sysfs = Sysfs(Path(sysfs_root))
    context = DetectContext(sysfs, nvml_loader, runner or CommandRunner(20.0, 2), Path(state_dir),
                            nvpmodel_mode, sm_clock_mhz, system_sampler_for(sysfs))
    if gpu_cfg_backend == "auto":
        return _first_available(context)
    if gpu_cfg_backend not in BUILDERS:
        raise ValueError(f"unknown gpu backend {gpu_cfg_backend!r}; expected auto, {', '.join(BUILDERS)}")
    return BUILDERS[gpu_cfg_backend](context)


def _first_available(context: DetectContext) -> GpuBackend:
    for name in AUTO_ORDER:
        try:
            return BUILDERS[name](context)
        except HardwareUnavailable:
            continue
    raise AssertionError("unreachable: the 'none' backend is always available")


def backend_for_config(cfg: Any, nvml_loader: Callable[[], Any] = load_pynvml,
                       runner: CommandRunner | None = None, sysfs_root: Path | None = None) -> GpuBackend:
    """choose_backend() with the [gpu] and [daemon] sections of an ishowttsd Config."""
    gpu = cfg.gpu
    runner = runner or CommandRunner(gpu.command_timeout_s, gpu.command_retries)
    return choose_backend(gpu.backend, sysfs_root or gpu.sysfs_root, nvml_loader, runner,
                          state_dir=cfg.daemon.state_dir, nvpmodel_mode=gpu.nvpmodel_mode,
                          sm_clock_mhz=gpu.sm_clock_mhz)
