"""Artefact archive and retention (R13, R14), daily, of the daemon's own files in log_dir only.

- Health reports of past months (health/YYYY-MM-DD.json) move to archive/YYYYMM/health-YYYY-MM-DD.json.
- Once a month the live histories (memory, benchmark, quality) are copied to
  archive/YYYYMM/<name>-YYYYMM.jsonl (the month that just ended), atomically.
- Archived files older than jobs.artefact_retention_days are deleted; emptied month folders go.
Only names matching the patterns below are ever moved or deleted: an operator's own files in
log_dir or archive/ are left alone. Which file goes where is decided by the pure
decide.retention.plan_archive / plan_delete.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import structlog
from tzlocal import get_localzone

from ishowttsd.decide.retention import SECONDS_PER_DAY, plan_archive, plan_delete
from ishowttsd.fsutil import atomic_write_bytes, fsync_dir
from ishowttsd.jobs.context import JobContext, JobOutcome

log = structlog.get_logger(__name__)
ARCHIVE_DIR = "archive"
HEALTH_DIR = "health"
LIVE_HISTORIES = ("memory_history.jsonl", "bench_history.jsonl", "quality_history.jsonl")
REPORT_NAME = re.compile(r"\d{4}-\d{2}-\d{2}\.json")
MONTH_NAME = re.compile(r"\d{6}")
ARCHIVED_NAME = re.compile(r"health-\d{4}-\d{2}-\d{2}\.json|(memory|bench|quality)_history-\d{6}\.jsonl")


def month_start_s(now_s: float, tz: dt.tzinfo) -> float:
    """Epoch seconds of 00:00 on the first day of the month containing now_s, in tz."""
    now = dt.datetime.fromtimestamp(now_s, tz)
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp()


def previous_month(now_s: float, tz: dt.tzinfo) -> str:
    """"YYYYMM" of the month before the one containing now_s."""
    return dt.datetime.fromtimestamp(month_start_s(now_s, tz) - 1, tz).strftime("%Y%m")


def _entries(directory: Path, pattern: re.Pattern[str]) -> list[tuple[str, float, int]]:
    if not directory.is_dir():
        return []
    found = [(p.name, p.stat()) for p in directory.iterdir() if p.is_file() and pattern.fullmatch(p.name)]
    return [(name, stat.st_mtime, stat.st_size) for name, stat in found]


def archive_reports(log_dir: Path, now_s: float, tz: dt.tzinfo) -> list[str]:
    """Move health reports last written before this month into their month's archive folder."""
    reports = log_dir / HEALTH_DIR
    age_days = (now_s - month_start_s(now_s, tz)) / SECONDS_PER_DAY
    plan = plan_archive(_entries(reports, REPORT_NAME), now_s, archive_after_days=age_days, tz=tz)
    moved = []
    for name, month in plan:
        target = log_dir / ARCHIVE_DIR / month / f"health-{name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(reports / name, target)
        fsync_dir(target.parent)
        moved.append(str(target.relative_to(log_dir)))
    return moved


def snapshot_histories(log_dir: Path, now_s: float, tz: dt.tzinfo) -> list[str]:
    """Copy each live history once per month into archive/<last month>/ (skipped when already there)."""
    month = previous_month(now_s, tz)
    made = []
    for name in LIVE_HISTORIES:
        source = log_dir / name
        target = log_dir / ARCHIVE_DIR / month / f"{Path(name).stem}-{month}.jsonl"
        if source.is_file() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, source.read_bytes(), mode=0o640)
            made.append(str(target.relative_to(log_dir)))
    return made


def _archived(log_dir: Path) -> list[tuple[str, float]]:
    root = log_dir / ARCHIVE_DIR
    if not root.is_dir():
        return []
    months = [d for d in root.iterdir() if d.is_dir() and MONTH_NAME.fullmatch(d.name)]
    return [(str(d / name), mtime) for d in months for name, mtime, _ in _entries(d, ARCHIVED_NAME)]


def delete_expired(log_dir: Path, now_s: float, retention_days: int) -> list[str]:
    """Delete archived files older than the retention, then month folders left empty."""
    doomed = plan_delete(_archived(log_dir), now_s, retention_days)
    for path in doomed:
        Path(path).unlink(missing_ok=True)
    for month in {Path(path).parent for path in doomed}:
        if month.is_dir() and not any(month.iterdir()):
            month.rmdir()
    return [str(Path(path).relative_to(log_dir)) for path in doomed]


def maintain(log_dir: Path, now_s: float, retention_days: int, tz: dt.tzinfo) -> dict[str, Any]:
    return {"archived": archive_reports(log_dir, now_s, tz),
            "snapshots": snapshot_histories(log_dir, now_s, tz),
            "deleted": delete_expired(log_dir, now_s, retention_days)}


async def run_artefacts(ctx: JobContext, tz: dt.tzinfo | None = None) -> JobOutcome:
    retention = ctx.get_config().jobs.artefact_retention_days
    done = await asyncio.to_thread(maintain, ctx.log_dir, ctx.clock(), retention, tz or get_localzone())
    counts = {key: len(paths) for key, paths in done.items()}
    if any(counts.values()):
        log.info("artefacts_maintained", **done)
    summary = ", ".join(f"{n} {key}" for key, n in counts.items())
    return JobOutcome("ok", f"{summary} (retention {retention} days)", done)
