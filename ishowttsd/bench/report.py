"""Benchmark numbers from timed requests (pure: no clocks, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ishowttsd.bench.load import LoadResult
from ishowttsd.decide.stats import summarize

RANDOM_WEIGHTS_LABEL = "random weights (speed only: the audio is noise)"


def summary_dict(values: Sequence[float]) -> dict[str, float] | None:
    return {k: round(v, 6) for k, v in summarize(values).as_dict().items()} if values else None


def load_row(result: LoadResult) -> dict[str, Any]:
    """Latency / TTFA / RTF summaries and throughput of one load run."""
    ok = result.ok
    audio = sum(t.audio_s for t in ok)
    return {
        "concurrency": result.concurrency, "requests": len(result.timings), "ok": len(ok),
        "errors": result.errors, "wall_s": round(result.wall_s, 6),
        "latency_s": summary_dict([t.latency_s for t in ok]), "ttfa_s": summary_dict([t.ttfa_s for t in ok]),
        "rtf": summary_dict([t.latency_s / t.audio_s for t in ok if t.audio_s > 0]),
        "throughput": round(len(ok) / result.wall_s, 4) if result.wall_s > 0 else 0.0,
        "audio_s_per_s": round(audio / result.wall_s, 4) if result.wall_s > 0 else 0.0,
    }


def engine_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, float]:
    """Mean engine compute and vocoder seconds per job from two /v1/status engine sections."""
    jobs = int(after.get("jobs_finished") or 0) - int(before.get("jobs_finished") or 0)
    if jobs <= 0:
        return {"jobs": 0, "synth_s_mean": 0.0, "vocoder_s_mean": 0.0}
    spent = {key: float(after.get(key) or 0) - float(before.get(key) or 0)
             for key in ("synth_s_total", "vocoder_s_total")}
    return {"jobs": jobs, "synth_s_mean": round(spent["synth_s_total"] / jobs, 6),
            "vocoder_s_mean": round(spent["vocoder_s_total"] / jobs, 6)}


def history_row(engine: Mapping[str, Any], nfe: int, single: Mapping[str, Any],
                loaded: Mapping[str, Any] | None, vocoder: Mapping[str, float]) -> dict[str, Any]:
    """One row in the shape the benchmark job keeps (jobs/benchmark.py BENCH_FIELDS and more)."""
    rtf, latency = single.get("rtf") or {}, single.get("latency_s") or {}
    return {
        "model": engine.get("model"), "device": engine.get("device"), "nfe": nfe,
        "compiled": bool(engine.get("compiled")), "dtype": engine.get("dtype"),
        "weights": RANDOM_WEIGHTS_LABEL if engine.get("random_weights") else "real",
        "rtf_mean": rtf.get("mean"), "rtf_p95": rtf.get("p95"), "rtf_std": rtf.get("std"),
        "rtf_p99": rtf.get("p99"), "latency_mean_s": latency.get("mean"), "latency_median_s": latency.get("median"),
        "latency_p95_s": latency.get("p95"), "latency_p99_s": latency.get("p99"), "latency_std_s": latency.get("std"),
        "ttfa_p50_s": (single.get("ttfa_s") or {}).get("p50"),
        "throughput": (loaded or single).get("throughput"), "vocoder_s_mean": vocoder.get("vocoder_s_mean"),
        "synth_s_mean": vocoder.get("synth_s_mean"),
    }


def format_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A fixed-width text table; floats with 4 significant digits."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "-" if value is None else str(value)
