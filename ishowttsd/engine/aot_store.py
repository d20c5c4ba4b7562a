"""AOTInductor packages on disk: built atomically, checked in a child process, then loaded.

Loading a package runs native code (a shared library and its kernels); one such load crashed with
SIGSEGV on an H100 (torch 2.11). So a package is first loaded by a separate check process; only
then (`NAME.ok`) does the worker load it. A package that cannot be built, or fails its check, is
remembered (`NAME.rejected`, with the reason): the key includes the torch version, so the same
torch does not rebuild it at every boot, and a new torch tries afresh. One that fails to load in the
worker itself (say, written by an older build) is built again, once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ishowttsd.fsutil import atomic_write_text

CHECK_TIMEOUT_S = 300.0
CHECK_SCRIPT = "import sys, torch; torch._inductor.aoti_load_package(sys.argv[1])"


class AotUnusable(RuntimeError):
    """A package that cannot be built or loaded here (the engine then uses scope "captured")."""


def export_and_package(module: nn.Module, example: tuple[Any, ...], dynamic: tuple[Any, ...], path: Path) -> None:
    """torch.export + AOTInductor into `path`, written atomically (a crash leaves no half package)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        exported = torch.export.export(module, example, dynamic_shapes=dynamic, strict=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp.pt2")
        os.close(fd)
        try:
            torch._inductor.aoti_compile_and_package(exported, package_path=tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def loads_in_a_child(path: Path) -> str:
    """'' when a separate process loads the package; else why not (a crash there cannot take us down)."""
    try:
        done = subprocess.run([sys.executable, "-c", CHECK_SCRIPT, str(path)], capture_output=True,
                              timeout=CHECK_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return f"loading {path.name} took over {CHECK_TIMEOUT_S:.0f}s"
    if done.returncode == 0:
        return ""
    tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
    return f"loading {path.name} failed in a check process (exit {done.returncode}): {tail[0]}"


def verified(path: Path) -> Path:
    return path.with_name(path.name + ".ok")


def load_or_build(path: Path, build: Callable[[], None]) -> Callable[..., Any]:
    """The package at `path` (built when missing), loaded here once a child process loaded it."""
    for last_try in (False, True):
        try:
            return load_checked(path, build)
        except AotUnusable:
            raise
        except Exception as exc:  # in-process load failed (e.g. written by another build): build it again, once
            if last_try:
                raise AotUnusable(f"loading {path.name}: {type(exc).__name__}: {exc}"[:1000]) from exc
            forget(path)
    raise AssertionError("unreachable")


def load_checked(path: Path, build: Callable[[], None]) -> Callable[..., Any]:
    if rejected(path).exists():  # this key (torch version included) failed its check before: no rebuild per boot
        raise AotUnusable(rejected(path).read_text().strip())
    if not path.exists():
        verified(path).unlink(missing_ok=True)  # a mark left by a package that is gone
        built(path, build)
    if not verified(path).exists():
        problem = loads_in_a_child(path)
        if problem:
            forget(path)
            atomic_write(rejected(path), problem)
            raise AotUnusable(problem)
        atomic_write(verified(path), "loaded in a check process")
    return torch._inductor.aoti_load_package(str(path))


def built(path: Path, build: Callable[[], None]) -> None:
    """Run `build`; a failure (export or compile: the same every time for this key) is remembered."""
    try:
        build()
    except Exception as exc:
        problem = f"building {path.name} failed: {type(exc).__name__}: {exc}"[:1000]
        atomic_write(rejected(path), problem)
        raise AotUnusable(problem) from exc


def rejected(path: Path) -> Path:
    return path.with_name(path.name + ".rejected")


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)
    verified(path).unlink(missing_ok=True)


def atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text + "\n")


