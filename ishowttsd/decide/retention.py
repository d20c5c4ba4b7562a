"""Artefact archive and retention plans (R13, R14): which files move to which monthly folder,
which archived files are deleted. Pure: file listings and the current time are arguments.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timezone, tzinfo

SECONDS_PER_DAY = 86_400.0

FileEntry = tuple[str, float, int]  # (name, mtime_s, size_bytes)
ArchivedEntry = tuple[str, float]  # (path, mtime_s)


def month_folder(mtime_s: float, tz: tzinfo = timezone.utc) -> str:
    """The "YYYYMM" archive folder of a file last modified at `mtime_s` (epoch seconds) in `tz`."""
    return datetime.fromtimestamp(mtime_s, tz).strftime("%Y%m")


def _over_budget(young: Sequence[FileEntry], max_active_bytes: int) -> list[FileEntry]:
    """The oldest young files to archive so that the rest fit in `max_active_bytes` (0 = no budget)."""
    if max_active_bytes <= 0:
        return []
    total = sum(size for _, _, size in young)
    chosen: list[FileEntry] = []
    for entry in young:  # oldest first
        if total <= max_active_bytes:
            break
        chosen.append(entry)
        total -= entry[2]
    return chosen


def plan_archive(
    files: Sequence[FileEntry],
    now_s: float,
    *,
    archive_after_days: float,
    keep: Collection[str] = (),
    max_active_bytes: int = 0,
    tz: tzinfo = timezone.utc,
) -> list[tuple[str, str]]:
    """(name, "YYYYMM") for each file to move into its monthly archive folder, oldest first.

    A file is archived once its mtime is more than `archive_after_days` old; if the files left are
    still above `max_active_bytes` (0 = no budget), the oldest of them go too. Names in `keep`
    (files being appended to, like the live memory history) are never archived. The month is
    that of the file's mtime in `tz` (pass the local zone to match `date +%Y%m`).
    """
    if archive_after_days < 0:
        raise ValueError(f"archive_after_days must be >= 0, got {archive_after_days}")
    cutoff = now_s - archive_after_days * SECONDS_PER_DAY
    candidates = sorted((f for f in files if f[0] not in keep), key=lambda f: (f[1], f[0]))
    old = [f for f in candidates if f[1] < cutoff]
    young = [f for f in candidates if f[1] >= cutoff]
    return [(name, month_folder(mtime, tz)) for name, mtime, _ in old + _over_budget(young, max_active_bytes)]


def plan_delete(archived: Sequence[ArchivedEntry], now_s: float, retention_days: float) -> list[str]:
    """Archived paths whose mtime is more than `retention_days` old, oldest first (0 = keep forever)."""
    if retention_days < 0:
        raise ValueError(f"retention_days must be >= 0, got {retention_days}")
    if retention_days == 0:
        return []
    cutoff = now_s - retention_days * SECONDS_PER_DAY
    return [path for path, mtime in sorted(archived, key=lambda a: (a[1], a[0])) if mtime < cutoff]
