"""[engine] cpu_threads: the worker's torch uses that many intra-op threads (checked in a fresh process)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

PROBE = """
import sys, torch
from ishowttsd.engine.f5 import F5Engine
from ishowttsd.engine.spec import EngineSpec
F5Engine.load(EngineSpec(model="tiny", cache_dir=sys.argv[1], cpu_threads=int(sys.argv[2])))
print(torch.get_num_threads())
"""


@pytest.mark.parametrize("threads", [1, 3])
def test_cpu_threads_sets_torch_threads_in_the_engine_process(tmp_path: Path, threads: int) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path), str(threads)], capture_output=True,
                         text=True, timeout=300, check=True).stdout
    assert out.strip().splitlines()[-1] == str(threads)
