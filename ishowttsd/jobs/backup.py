"""Scheduled config backup (R32): a timestamped copy of the config file, pruned to jobs.backup_keep.

Backups before every reload/rollback/reset are made by the reloader and the ConfigStore itself;
this job adds the daily one. An unchanged file is not copied again (30 identical daily copies
would push the meaningful pre-reload backups out of the retention window).
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog

from ishowttsd.configstore import BackupInfo, ConfigStore
from ishowttsd.jobs.context import JobContext, JobOutcome

log = structlog.get_logger(__name__)
NO_CONFIG_FILE = "no config file: the daemon runs on built-in defaults, nothing to back up"


def backup_if_changed(store: ConfigStore,
                      reason: str) -> tuple[BackupInfo | None, BackupInfo | None, list[str]]:
    """(new backup or None, newest existing backup, pruned ids); copies only when the content changed."""
    current = hashlib.sha256(store.config_path.read_bytes()).hexdigest()
    backups = store.list_backups()
    newest = backups[0] if backups else None
    if newest is not None and newest.sha256 == current:
        return None, newest, store.prune()
    return store.backup(reason), newest, []


async def run_backup(ctx: JobContext) -> JobOutcome:
    store = ctx.config_store
    if store is None:
        return JobOutcome("skipped", NO_CONFIG_FILE)
    store.keep = ctx.get_config().jobs.backup_keep
    made, newest, pruned = await asyncio.to_thread(backup_if_changed, store, "scheduled")
    if made is None:
        summary = f"unchanged since backup {newest.id if newest else '?'}: no new copy"
        return JobOutcome("ok", summary, {"pruned": pruned})
    log.info("config_backup", id=made.id, reason=made.reason, path=str(made.path))
    return JobOutcome("ok", f"backed up as {made.id}", {"backup": made.to_dict()})
