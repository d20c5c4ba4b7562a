"""How engine workers are started: forked from a fork server that imported torch + f5-tts once.

A fresh `spawn`ed worker spends 4-10 s importing torch and f5-tts before it can load the model; that
was most of the time the engine was away after a crash. With the `forkserver` start method the
multiprocessing fork server (a child of the daemon, never the daemon itself) imports
ishowttsd.engine.preload once; every worker (first, restart, recycle) is then a fork of a process
that already paid for the imports. CUDA is initialised only in the forked worker (preload.py makes
sure the imports do not initialise it). A dead fork server is started again by multiprocessing on
the next worker start (it then pays the imports again, once).

ISHOWTTSD_WORKER_START=spawn is the escape hatch (docs/operations.md): each worker a fresh interpreter.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
from collections.abc import Mapping, MutableMapping
from multiprocessing.context import BaseContext

START_ENV = "ISHOWTTSD_WORKER_START"
DEFAULT_START = "forkserver"
START_METHODS = ("forkserver", "spawn")
FORK_SERVER_PRELOAD = ["ishowttsd.engine.preload"]
ENGINE_MODULES = ("ishowttsd.engine.f5", "ishowttsd.engine.tiny", "ishowttsd.engine.compiled",
                  "ishowttsd.engine.scheduler", "ishowttsd.engine.worker")
# Read when torch's config modules are imported: set in the fork server first (each worker's own
# worker.cache_environment comes after the imports there, too late for these). f5-tts asks
# torch.cuda.is_available() at import; NVML-based, that does not create a CUDA context, which a
# fork would leave broken in the child. The worker initialises CUDA itself. (Checked on an H100, torch
# 2.11: with it the forked child ran CUDA; without it: "Cannot re-initialize CUDA in forked subprocess".)
IMPORT_TIME_ENVIRONMENT = {
    "PYTORCH_NVML_BASED_CUDA_CHECK": "1",
    "TORCHINDUCTOR_FX_GRAPH_CACHE": "1",
    "TORCHINDUCTOR_AUTOGRAD_CACHE": "1",
}
# Read lazily, per worker (its spec's cache dir). Importing torch._dynamo pins TORCHINDUCTOR_CACHE_DIR
# to its /tmp default in os.environ, which would then win over the worker's setdefault: restored.
LAZY_ENVIRONMENT = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


class BadStartMethod(ValueError):
    """ISHOWTTSD_WORKER_START names a start method ishowttsd does not support."""


def start_method(environ: Mapping[str, str]) -> str:
    """The configured start method (empty or unset = forkserver); BadStartMethod names the choices."""
    method = environ.get(START_ENV, "").strip() or DEFAULT_START
    if method not in START_METHODS:
        raise BadStartMethod(f"{START_ENV}={method!r}: expected one of {', '.join(START_METHODS)}")
    return method


def worker_context(method: str) -> BaseContext:
    """The multiprocessing context workers are started from (forkserver: with the engine preloaded)."""
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload(FORK_SERVER_PRELOAD)  # type: ignore[attr-defined]
    return context


def preload_engine(environ: MutableMapping[str, str] = os.environ) -> None:
    """The fork server's imports, with the environment around them set as the workers need it."""
    before = {key: environ.get(key) for key in LAZY_ENVIRONMENT}
    for key, value in IMPORT_TIME_ENVIRONMENT.items():
        environ.setdefault(key, value)  # an operator's own setting wins, as in worker_main
    for name in ENGINE_MODULES:
        importlib.import_module(name)
    restore_environment(environ, before)


def restore_environment(environ: MutableMapping[str, str], before: Mapping[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            environ.pop(key, None)
        else:
            environ[key] = value
