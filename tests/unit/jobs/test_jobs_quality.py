"""Quality job (R21, R23): distances judged against the threshold, flagged with the remedy."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from test_jobs_support import make_rig

from ishowttsd.fsutil import read_jsonl
from ishowttsd.jobs.quality import QUALITY_HISTORY, REMEDY, QualityJob, judged


def quality(distance_nfe: float, distance_path: float = 0.05) -> Any:
    async def quality_fn() -> dict[str, Any]:
        return {"comparisons": [{"name": "nfe8_vs_nfe32", "distance": distance_nfe, "seed": 1},
                                {"name": "optimised_vs_reference", "distance": distance_path}]}

    return quality_fn


async def test_not_configured_without_a_quality_function(tmp_path: Path) -> None:
    outcome = await QualityJob(make_rig(tmp_path).ctx, asyncio.Lock()).run()
    assert outcome.status == "skipped" and outcome.summary.startswith("not configured")


async def test_within_threshold_is_ok_and_recorded(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, quality_fn=quality(0.8), jobs={"quality_max_mel_distance": 1.5})
    outcome = await QualityJob(rig.ctx, asyncio.Lock()).run()
    assert outcome.status == "ok" and "nfe8_vs_nfe32: log-mel distance 0.800 within" in outcome.summary
    [record] = read_jsonl(rig.ctx.log_dir / QUALITY_HISTORY)
    assert [c["ok"] for c in record["comparisons"]] == [True, True] and record["comparisons"][0]["seed"] == 1


async def test_above_threshold_is_flagged_with_the_remedy(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, quality_fn=quality(2.4), jobs={"quality_max_mel_distance": 1.5})
    outcome = await QualityJob(rig.ctx, asyncio.Lock()).run()
    assert outcome.status == "flagged" and REMEDY in outcome.summary
    expected = "quality: flagged: nfe8_vs_nfe32: log-mel distance 2.400 above threshold 1.500"
    assert rig.sources.degraded == [expected]


def test_a_result_without_comparisons_is_an_error() -> None:
    with pytest.raises(ValueError, match="no 'comparisons' list"):
        judged({"distance": 1.0}, 1.5)
    assert judged({"comparisons": [{"distance": float("nan")}]}, 1.5)[0]["ok"] is False
