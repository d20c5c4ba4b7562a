"""Artefacts job (R13, R14): monthly archive folders and retention, only of the daemon's own files."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from test_jobs_support import make_rig

from ishowttsd.jobs.artefacts import month_start_s, previous_month, run_artefacts

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 25, 5, 0, tzinfo=UTC).timestamp()
DAY = 86_400.0


def touch(path: Path, text: str, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.utime(path, (mtime, mtime))
    return path


async def test_archives_past_months_snapshots_histories_and_expires_old_archives(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, now=NOW, jobs={"artefact_retention_days": 90})
    log = rig.ctx.log_dir
    old_report = touch(log / "health" / "2026-10-03.json", "{}", NOW - 53 * DAY)
    this_month = touch(log / "health" / "2026-11-20.json", "{}", NOW - 5 * DAY)
    touch(log / "memory_history.jsonl", '{"timestamp_s": 1}\n', NOW - 60)
    expired = touch(log / "archive" / "202607" / "health-2026-07-01.json", "{}", NOW - 140 * DAY)
    theirs = [touch(log / "archive" / "202607" / "operator-notes.txt", "mine", NOW - 400 * DAY),
              touch(log / "health" / "notes.json", "mine", NOW - 300 * DAY),
              touch(log / "backend.log", "mine", NOW - 300 * DAY)]
    expired_alone = touch(log / "archive" / "202606" / "bench_history-202606.jsonl", "", NOW - 150 * DAY)

    outcome = await run_artefacts(rig.ctx, tz=UTC)

    assert outcome.details["archived"] == ["archive/202610/health-2026-10-03.json"]
    assert not old_report.exists() and (log / "archive" / "202610" / "health-2026-10-03.json").exists()
    assert this_month.exists()
    assert outcome.details["snapshots"] == ["archive/202610/memory_history-202610.jsonl"]
    assert (log / "archive" / "202610" / "memory_history-202610.jsonl").read_text() == '{"timestamp_s": 1}\n'
    assert not expired.exists() and not expired_alone.exists()
    assert not (log / "archive" / "202606").exists()  # emptied month folder removed
    assert all(path.exists() for path in theirs)  # never touches files it did not create
    assert outcome.summary == "1 archived, 1 snapshots, 2 deleted (retention 90 days)"


async def test_a_second_run_the_same_month_does_nothing(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, now=NOW)
    touch(rig.ctx.log_dir / "bench_history.jsonl", "{}\n", NOW - 60)
    await run_artefacts(rig.ctx, tz=UTC)
    again = await run_artefacts(rig.ctx, tz=UTC)
    assert again.details == {"archived": [], "snapshots": [], "deleted": []}


def test_month_boundaries() -> None:
    assert month_start_s(NOW, UTC) == dt.datetime(2026, 11, 1, tzinfo=UTC).timestamp()
    assert previous_month(NOW, UTC) == "202610"
    assert previous_month(dt.datetime(2027, 1, 1, 0, 30, tzinfo=UTC).timestamp(), UTC) == "202612"
