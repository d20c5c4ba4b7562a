"""Backup job (R32) on a real ConfigStore in a temp dir."""

from __future__ import annotations

from pathlib import Path

from test_jobs_support import config_store, make_rig

from ishowttsd.jobs.backup import NO_CONFIG_FILE, run_backup


async def test_without_a_config_file_there_is_nothing_to_back_up(tmp_path: Path) -> None:
    outcome = await run_backup(make_rig(tmp_path).ctx)
    assert (outcome.status, outcome.summary) == ("skipped", NO_CONFIG_FILE)


async def test_backs_up_once_per_change_and_prunes_to_backup_keep(tmp_path: Path) -> None:
    store = config_store(tmp_path)
    rig = make_rig(tmp_path, store=store, jobs={"backup_keep": 2})
    first = await run_backup(rig.ctx)
    assert first.summary.startswith("backed up as ") and first.details["backup"]["reason"] == "scheduled"
    unchanged = await run_backup(rig.ctx)
    assert unchanged.summary.startswith("unchanged since backup") and len(store.list_backups()) == 1
    for nfe in (12, 16):
        store.config_path.write_text(f"[engine]\nnfe = {nfe}\n")
        await run_backup(rig.ctx)
    backups = store.list_backups()
    assert len(backups) == 2 and store.keep == 2
    assert backups[0].path.read_text() == "[engine]\nnfe = 16\n"
    assert first.details["backup"]["id"] not in {b.id for b in backups}
