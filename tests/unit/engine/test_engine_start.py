"""engine/start.py + engine/preload.py: workers forked from a fork server that imported the engine once.

The probe runs in a process started exactly as WorkerHandle starts a worker, and checks what the
brief asks to verify rather than assume: the engine is already imported there, CUDA is not
initialised, settings the worker makes after the imports still take effect (compile cache dir,
thread count), and an Inductor compile really writes into the worker's cache dir.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from ishowttsd.engine.start import (
    IMPORT_TIME_ENVIRONMENT,
    BadStartMethod,
    restore_environment,
    start_method,
    worker_context,
)
from ishowttsd.engine.worker import cache_environment

PROBE_TIMEOUT_S = 240.0


def test_start_method_defaults_to_forkserver_and_accepts_spawn() -> None:
    assert start_method({}) == "forkserver"
    assert start_method({"ISHOWTTSD_WORKER_START": " "}) == "forkserver"
    assert start_method({"ISHOWTTSD_WORKER_START": "spawn"}) == "spawn"


def test_an_unknown_start_method_is_refused_with_the_choices() -> None:
    with pytest.raises(BadStartMethod, match=r"'fork'.*forkserver, spawn"):
        start_method({"ISHOWTTSD_WORKER_START": "fork"})


def test_every_import_time_cache_flag_is_set_by_the_fork_server() -> None:
    """worker_main sets the cache env after the fork server imported torch: flags read at import must come first."""
    flags = {key: value for key, value in cache_environment("/x").items() if not key.endswith("_DIR")}
    assert flags.items() <= IMPORT_TIME_ENVIRONMENT.items()


def test_restoring_the_environment_undoes_what_an_import_pinned() -> None:
    environ = {"TORCHINDUCTOR_CACHE_DIR": "/tmp/torchinductor_root", "TRITON_CACHE_DIR": "/tmp/t", "KEEP": "1"}
    restore_environment(environ, {"TORCHINDUCTOR_CACHE_DIR": None, "TRITON_CACHE_DIR": "/mine"})
    assert environ == {"TRITON_CACHE_DIR": "/mine", "KEEP": "1"}


def probe(conn: Connection, cache_dir: str) -> None:
    """In the forked worker: what was imported before us, and do late settings take effect?"""
    preloaded = "ishowttsd.engine.f5" in sys.modules and "torch" in sys.modules
    for key, value in cache_environment(cache_dir).items():
        os.environ.setdefault(key, value)  # as worker_main does, after the fork server's imports
    import torch
    from torch._inductor import config as inductor_config
    from torch._inductor.runtime.cache_dir_utils import cache_dir as inductor_cache_dir

    cuda_initialised = torch.cuda.is_initialized()
    torch.set_num_threads(1)
    product = float((torch.ones(256, 256) @ torch.ones(256, 256)).sum())
    compiled = torch.compile(lambda x: torch.sin(x) * 2 + 1, backend="inductor")
    compiled(torch.arange(8.0))
    conn.send({"preloaded": preloaded, "cuda_initialised": cuda_initialised, "threads": torch.get_num_threads(),
               "product": product, "inductor_cache_dir": inductor_cache_dir(),
               "fx_graph_cache": inductor_config.fx_graph_cache, "pid": os.getpid()})


def run_probe(method: str, cache_dir: Path) -> dict[str, Any]:
    context = worker_context(method)
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=probe, args=(child, str(cache_dir)), daemon=True)
    process.start()
    child.close()
    assert parent.poll(PROBE_TIMEOUT_S), "the probe did not answer"
    answer = parent.recv()
    process.join(30)
    assert process.exitcode == 0
    return answer


# Run from a fresh process that has not imported torch, like the daemon: a pytest process that already
# imported torch._dynamo has TORCHINDUCTOR_CACHE_DIR pinned in its environment, which a fork server it
# starts would inherit as if the operator had set it.
DAEMON_LIKE_RUN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_engine_start import run_probe
root = Path(sys.argv[2])
run_probe("forkserver", root / "first")  # the fork server's own imports are paid here
started = time.monotonic()
answer = run_probe("forkserver", root / "second")
print(json.dumps({**answer, "took_s": time.monotonic() - started}))
"""


def probe_like_the_daemon(root: Path) -> dict[str, Any]:
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("TORCHINDUCTOR", "TRITON"))}
    run = subprocess.run([sys.executable, "-c", DAEMON_LIKE_RUN, str(Path(__file__).parent), str(root)],
                         env=environ, capture_output=True, text=True, timeout=2 * PROBE_TIMEOUT_S, check=True)
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_forked_worker_has_the_engine_imported_and_honours_late_settings(tmp_path: Path) -> None:
    answer = probe_like_the_daemon(tmp_path)
    print(f"\nFIGURE forkserver probe: second worker answered in {answer['took_s']:.2f}s (incl. an inductor compile)")
    assert answer["preloaded"] and not answer["cuda_initialised"]
    assert answer["threads"] == 1 and answer["product"] == 256.0**3
    assert answer["inductor_cache_dir"] == str(tmp_path / "second" / "compile" / "inductor")
    assert answer["fx_graph_cache"] is True
    assert any((tmp_path / "second" / "compile" / "inductor").rglob("*.py")), "inductor wrote nothing there"
