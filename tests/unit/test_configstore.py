"""Tests for ishowttsd.configstore: backups, byte-exact rollback, reset, pruning, damaged sidecars."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pytest

from ishowttsd.configstore import (
    BackupCorrupt,
    BackupNotFound,
    ConfigStore,
    backup_id_for,
    select_backups_to_prune,
)

ORIGINAL = b"# original\r\n[engine]\nnfe = 8\n\xe2\x80\x94 trailing bytes without newline"
EDITED = b"[engine]\nnfe = 32\n"
DEFAULTS = b"# packaged defaults\n[engine]\n"


@pytest.fixture
def store(tmp_path: Path) -> ConfigStore:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "ishowttsd.toml"
    config.write_bytes(ORIGINAL)
    os.chmod(config, 0o640)
    defaults = tmp_path / "defaults.toml"
    defaults.write_bytes(DEFAULTS)
    return ConfigStore(config, tmp_path / "state" / "backups", defaults, keep=5)


def test_backup_records_content_hash_and_reason(store: ConfigStore) -> None:
    info = store.backup("Manual: before NFE change!")
    assert info.id.endswith("Z-manual-before-nfe-change")
    assert info.path.read_bytes() == ORIGINAL
    assert info.sha256 == hashlib.sha256(ORIGINAL).hexdigest() and info.size == len(ORIGINAL)
    sidecar = json.loads((store.backup_dir / f"{info.id}.json").read_text())
    assert sidecar["reason"] == "Manual: before NFE change!" and sidecar["sha256"] == info.sha256
    assert sidecar["size"] == len(ORIGINAL) and sidecar["source"] == str(store.config_path)
    assert store.list_backups() == [info]


def test_rollback_restores_byte_for_byte_and_keeps_mode(store: ConfigStore) -> None:
    first = store.backup("pre-reload")
    store.config_path.write_bytes(EDITED)
    restored = store.rollback()
    assert restored == first
    assert store.config_path.read_bytes() == ORIGINAL
    assert store.config_path.stat().st_mode & 0o777 == 0o640
    newest = store.list_backups()[0]
    assert newest.reason == "pre-rollback" and newest.path.read_bytes() == EDITED


def test_rollback_to_a_named_older_backup(store: ConfigStore) -> None:
    older = store.backup("one")
    store.config_path.write_bytes(EDITED)
    store.backup("two")
    store.config_path.write_bytes(b"third\n")
    assert store.rollback(older.id).id == older.id
    assert store.config_path.read_bytes() == ORIGINAL


def test_unknown_id_and_empty_store_raise_backup_not_found(store: ConfigStore) -> None:
    with pytest.raises(BackupNotFound, match="no config backups in"):
        store.rollback()
    store.backup("x")
    with pytest.raises(KeyError, match=r"no config backup '20990101T000000Z-nope'.*newest: 2"):
        store.rollback("20990101T000000Z-nope")
    with pytest.raises(BackupNotFound):
        store.rollback("../../etc/passwd")
    assert store.config_path.read_bytes() == ORIGINAL


def test_corrupt_backup_content_is_refused_and_config_untouched(store: ConfigStore) -> None:
    info = store.backup("good")
    info.path.write_bytes(b"bit rot")
    store.config_path.write_bytes(EDITED)
    with pytest.raises(BackupCorrupt, match=info.id):
        store.rollback(info.id)
    assert store.config_path.read_bytes() == EDITED
    assert [b.id for b in store.list_backups()] == [info.id]


@pytest.mark.parametrize("damage", [b"{not json", b"[]", b'{"created": "yesterday"}', None])
def test_damaged_or_missing_sidecar_is_tolerated(store: ConfigStore, damage: bytes | None) -> None:
    info = store.backup("pre-reload")
    sidecar = store.backup_dir / f"{info.id}.json"
    if damage is None:
        sidecar.unlink()
    else:
        sidecar.write_bytes(damage)
    [listed] = store.list_backups()
    assert (listed.id, listed.reason, listed.sha256) == (info.id, "pre-reload", info.sha256)
    assert not listed.verified
    assert listed.created == info.created
    store.config_path.write_bytes(EDITED)
    store.rollback()
    assert store.config_path.read_bytes() == ORIGINAL


def test_foreign_files_in_backup_dir_are_ignored(store: ConfigStore) -> None:
    store.backup_dir.mkdir(parents=True)
    (store.backup_dir / "notes.toml").write_text("hand-made")
    (store.backup_dir / "README").write_text("x")
    info = store.backup("one")
    assert [b.id for b in store.list_backups()] == [info.id]
    assert (store.backup_dir / "notes.toml").exists()


def test_reset_to_defaults_backs_up_first(store: ConfigStore) -> None:
    made = store.reset_to_defaults()
    assert made is not None and made.reason == "pre-reset" and made.path.read_bytes() == ORIGINAL
    assert store.config_path.read_bytes() == DEFAULTS
    store.config_path.unlink()
    assert store.reset_to_defaults() is None
    assert store.config_path.read_bytes() == DEFAULTS
    assert store.config_path.stat().st_mode & 0o777 == 0o644


def test_backup_of_missing_config_raises(store: ConfigStore) -> None:
    store.config_path.unlink()
    with pytest.raises(FileNotFoundError):
        store.backup("x")


def test_backups_in_one_second_get_increasing_ids_and_list_newest_first(store: ConfigStore) -> None:
    ids = [store.backup(f"b{n}").id for n in range(4)]
    assert ids == sorted(ids) and len(set(ids)) == 4
    assert [b.id for b in store.list_backups()] == ids[::-1]


def test_backup_prunes_to_keep(store: ConfigStore) -> None:
    ids = [store.backup(f"b{n}").id for n in range(8)]
    assert [b.id for b in store.list_backups()] == ids[:2:-1]
    assert sorted(p.name for p in store.backup_dir.iterdir()) == sorted(
        [f"{i}.toml" for i in ids[3:]] + [f"{i}.json" for i in ids[3:]])
    store.keep = 2
    assert store.prune() == ids[3:6]
    assert len(list(store.backup_dir.iterdir())) == 4


def test_rollback_still_restores_when_its_backup_is_pruned_by_the_pre_rollback_backup(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_bytes(ORIGINAL)
    store = ConfigStore(config, tmp_path / "b", tmp_path / "d.toml", keep=1)
    only = store.backup("only")
    config.write_bytes(EDITED)
    assert store.rollback().id == only.id
    assert config.read_bytes() == ORIGINAL


def test_backup_id_for_is_monotonic() -> None:
    now = dt.datetime(2026, 11, 25, 12, 3, 1, 999999, tzinfo=dt.timezone.utc)
    assert backup_id_for(now, "Pre Reload", []) == "20261125T120301Z-pre-reload"
    assert backup_id_for(now, "x", ["20261125T120301Z-a"]) == "20261125T120302Z-x"
    assert backup_id_for(now, "x", ["20261125T130000Z-later", "junk"]) == "20261125T130001Z-x"
    assert backup_id_for(now, "x", ["20261125T110000Z-a"]) == "20261125T120301Z-x"
    local = now.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert backup_id_for(local, "", []) == "20261125T120301Z-manual"
    assert backup_id_for(now, "é" * 3 + "-" * 50 + "z" * 60, []).split("Z-")[1] == "z" * 40


def test_select_backups_to_prune() -> None:
    ids = ["20261125T120303Z-c", "20261125T120301Z-a", "foreign", "20261124T000000Z-old",
           "20261125T120302Z-b"]
    assert select_backups_to_prune(ids, 2) == ["20261124T000000Z-old", "20261125T120301Z-a"]
    assert select_backups_to_prune(ids, 10) == []
    assert select_backups_to_prune(ids, 0) == sorted(i for i in ids if i != "foreign")
    with pytest.raises(ValueError):
        select_backups_to_prune(ids, -1)


def test_to_dict_is_json_ready(store: ConfigStore) -> None:
    info = store.backup("api")
    record = json.loads(json.dumps(info.to_dict()))
    assert record["id"] == info.id and record["created"].endswith("+00:00") and record["verified"] is True
