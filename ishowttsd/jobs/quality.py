"""Monthly quality check (R21, R23): objective distance NFE 8 vs NFE 32, optimised vs reference path.

The rendering and measuring is `ctx.quality_fn()` (ishowttsd.bench, wired by the daemon); it
returns {"comparisons": [{"name": "nfe8_vs_nfe32", "distance": 0.8, ...}, ...]} with one log-mel
distance per comparison (same text, same seed). Each distance is judged against
jobs.quality_max_mel_distance by decide.quality.compare_quality; a flagged comparison is logged,
shown in STATUS= and answered with the runbook's remedy (R23). Every run is appended to
log_dir/quality_history.jsonl.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from ishowttsd.decide.quality import compare_quality
from ishowttsd.fsutil import append_jsonl_line
from ishowttsd.jobs.context import JobContext, JobOutcome, set_degraded

log = structlog.get_logger(__name__)
QUALITY_HISTORY = "quality_history.jsonl"
DEGRADED_KEY = "quality"
NOT_CONFIGURED = "not configured: no quality function wired into the daemon"
REMEDY = ("R23: raise [engine].nfe to 12 or 16, or set [engine].dtype = \"fp32\"; check the reference "
          "voice (>= 3 s, clear); then `ishowttsctl config check` and `systemctl reload ishowttsd`")


def judged(result: Mapping[str, Any], threshold: float) -> list[dict[str, Any]]:
    """Each comparison with its verdict; ValueError when the result has none."""
    comparisons = result.get("comparisons")
    if not isinstance(comparisons, list) or not comparisons:
        raise ValueError(f"quality_fn result has no 'comparisons' list: keys {sorted(result)}")
    rows = []
    for comparison in comparisons:
        verdict = compare_quality(float(comparison["distance"]), threshold)
        rows.append({**comparison, "ok": verdict.ok, "threshold": threshold, "message": verdict.message})
    return rows


class QualityJob:
    def __init__(self, ctx: JobContext, engine_lock: asyncio.Lock) -> None:
        self.ctx, self.engine_lock = ctx, engine_lock

    async def run(self) -> JobOutcome:
        if self.ctx.quality_fn is None:
            return JobOutcome("skipped", NOT_CONFIGURED)
        async with self.engine_lock:
            result = await self.ctx.quality_fn()
        rows = judged(result, self.ctx.get_config().jobs.quality_max_mel_distance)
        record = {"timestamp_s": round(self.ctx.clock(), 3), "comparisons": rows}
        await asyncio.to_thread(append_jsonl_line, self.ctx.log_dir / QUALITY_HISTORY, record)
        return self._outcome(rows, record)

    def _outcome(self, rows: list[dict[str, Any]], record: dict[str, Any]) -> JobOutcome:
        flagged = [f"{row.get('name', '?')}: {row['message']}" for row in rows if not row["ok"]]
        set_degraded(self.ctx.status_sources, DEGRADED_KEY, f"flagged: {flagged[0]}" if flagged else None)
        if flagged:
            log.error("quality_flagged", flagged=flagged, remedy=REMEDY)
            return JobOutcome("flagged", "; ".join(flagged) + f" — {REMEDY}", record)
        log.info("quality_checked", comparisons=[row["message"] for row in rows])
        summary = "; ".join(f"{row.get('name', '?')}: {row['message']}" for row in rows)
        return JobOutcome("ok", summary, record)
