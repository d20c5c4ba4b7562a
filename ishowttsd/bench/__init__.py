"""Benchmarks and quality checks that drive a running ishowttsd over its socket (no torch here).

    bench_fn = make_bench_fn(socket_path)          # bench_fn(nfe_list, runs) -> {"results": [...]}
    quality_fn = make_quality_fn(socket_path, spec) # quality_fn() -> {"comparisons": [...]}
"""

from ishowttsd.bench.quality import make_quality_fn, run_quality
from ishowttsd.bench.runner import BenchPlan, make_bench_fn, run_benchmark

__all__ = ["BenchPlan", "make_bench_fn", "make_quality_fn", "run_benchmark", "run_quality"]
