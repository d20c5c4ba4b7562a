"""Config backups, rollback and reset to defaults (runbook R32, R33, R34).

Each backup is two files in backup_dir: ID.toml (the config, byte for byte) and ID.json (a
sidecar: id, created, reason, sha256, size, source). IDs look like 20261125T120301Z-pre-reload;
their timestamps strictly increase (a backup in the same second as the newest, or after the
clock stepped back, takes the newest's second + 1), so sorting IDs sorts backups by age.
A missing or corrupt sidecar is tolerated: the backup is listed from its ID and content
(verified=False). Every write goes through fsutil's atomic writes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ishowttsd.fsutil import atomic_write_bytes, atomic_write_text

__all__ = ["BackupCorrupt", "BackupInfo", "BackupNotFound", "ConfigStore", "backup_id_for",
           "select_backups_to_prune"]

_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_BACKUP_ID = re.compile(r"(\d{8}T\d{6}Z)-([a-z0-9][a-z0-9-]*)")


class BackupNotFound(KeyError):
    """No backup has the requested id (or there is no backup at all)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "backup not found"


class BackupCorrupt(Exception):
    """A backup's content does not match the sha256 recorded when it was made."""


@dataclass(frozen=True)
class BackupInfo:
    id: str
    created: dt.datetime
    reason: str
    sha256: str
    size: int
    path: Path
    verified: bool = True  # False when the sidecar was missing/corrupt and sha256 was recomputed

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "created": self.created.isoformat(), "reason": self.reason,
                "sha256": self.sha256, "size": self.size, "path": str(self.path), "verified": self.verified}


def _stamp_of(backup_id: str) -> dt.datetime | None:
    found = _BACKUP_ID.fullmatch(backup_id)
    if found is None:
        return None
    return dt.datetime.strptime(found.group(1), _STAMP_FORMAT).replace(tzinfo=dt.timezone.utc)


def _created(backup_id: str) -> dt.datetime:
    stamp = _stamp_of(backup_id)
    if stamp is None:
        raise ValueError(f"{backup_id!r} is not a backup id")
    return stamp


def _slug(reason: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", reason.lower()).strip("-")[:40].rstrip("-") or "manual"


def backup_id_for(now: dt.datetime, reason: str, existing_ids: list[str]) -> str:
    """The id of a new backup made at `now`: later than every existing id's timestamp."""
    stamps = [stamp for stamp in map(_stamp_of, existing_ids) if stamp is not None]
    moment = now.astimezone(dt.timezone.utc).replace(microsecond=0)
    if stamps and moment <= max(stamps):
        moment = max(stamps) + dt.timedelta(seconds=1)
    return f"{moment.strftime(_STAMP_FORMAT)}-{_slug(reason)}"


def select_backups_to_prune(ids: list[str], keep: int) -> list[str]:
    """The backup ids beyond the `keep` newest, oldest first; ids not in our format are never chosen."""
    if keep < 0:
        raise ValueError(f"keep must be >= 0, got {keep}")
    ours = sorted(backup_id for backup_id in ids if _stamp_of(backup_id) is not None)
    return ours[: max(len(ours) - keep, 0)]


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ConfigStore:
    """Backups of one config file, with rollback and reset to the packaged defaults."""

    def __init__(self, config_path: Path, backup_dir: Path, defaults_path: Path, keep: int = 30) -> None:
        self.config_path = Path(config_path)
        self.backup_dir = Path(backup_dir)
        self.defaults_path = Path(defaults_path)
        self.keep = keep

    def backup(self, reason: str) -> BackupInfo:
        """Copy the current config into a new backup, then prune to `keep`. FileNotFoundError
        if the config file does not exist."""
        data = self.config_path.read_bytes()
        self.backup_dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        backup_id = backup_id_for(dt.datetime.now(dt.timezone.utc), reason, self._ids())
        info = BackupInfo(backup_id, _created(backup_id), reason, _sha256(data), len(data),
                          self._content_path(backup_id))
        atomic_write_bytes(info.path, data, mode=0o640)
        atomic_write_text(self._sidecar_path(backup_id), json.dumps(self._sidecar(info), indent=1), 0o640)
        self.prune()
        return info

    def list_backups(self) -> list[BackupInfo]:
        """All backups, newest first."""
        return [self._info(backup_id) for backup_id in sorted(self._ids(), reverse=True)]

    def rollback(self, backup_id: str | None = None) -> BackupInfo:
        """Restore a backup (None = the newest) byte for byte; the current file is backed up first
        as "pre-rollback". Raises BackupNotFound or BackupCorrupt (config untouched then)."""
        info = self._find(backup_id)
        data = self._verified_content(info)
        self._backup_if_present("pre-rollback")
        self._install(data, info.sha256)
        return info

    def reset_to_defaults(self) -> BackupInfo | None:
        """Back the current config up ("pre-reset"; None if there was none) and install the
        packaged defaults file."""
        data = self.defaults_path.read_bytes()
        made = self._backup_if_present("pre-reset")
        self._install(data, _sha256(data))
        return made

    def prune(self) -> list[str]:
        """Delete all but the `keep` newest backups; returns the ids removed."""
        doomed = select_backups_to_prune(self._ids(), self.keep)
        for backup_id in doomed:
            for path in (self._sidecar_path(backup_id), self._content_path(backup_id)):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        return doomed

    def _ids(self) -> list[str]:
        if not self.backup_dir.is_dir():
            return []
        return [p.stem for p in self.backup_dir.glob("*.toml") if _stamp_of(p.stem) is not None]

    def _content_path(self, backup_id: str) -> Path:
        return self.backup_dir / f"{backup_id}.toml"

    def _sidecar_path(self, backup_id: str) -> Path:
        return self.backup_dir / f"{backup_id}.json"

    def _sidecar(self, info: BackupInfo) -> dict[str, Any]:
        record = info.to_dict()
        del record["path"], record["verified"]
        return {**record, "source": str(self.config_path)}

    def _info(self, backup_id: str) -> BackupInfo:
        path = self._content_path(backup_id)
        try:
            meta = json.loads(self._sidecar_path(backup_id).read_text(encoding="utf-8"))
            return BackupInfo(backup_id, dt.datetime.fromisoformat(meta["created"]), str(meta["reason"]),
                              str(meta["sha256"]), int(meta["size"]), path)
        except (OSError, ValueError, KeyError, TypeError):
            return self._info_without_sidecar(backup_id, path)

    def _info_without_sidecar(self, backup_id: str, path: Path) -> BackupInfo:
        data = path.read_bytes()
        reason = backup_id.split("-", 1)[1]
        return BackupInfo(backup_id, _created(backup_id), reason, _sha256(data), len(data), path,
                          verified=False)

    def _find(self, backup_id: str | None) -> BackupInfo:
        ids = self._ids()
        if backup_id is None and ids:
            return self._info(max(ids))
        if backup_id is not None and backup_id in ids:
            return self._info(backup_id)
        known = ", ".join(sorted(ids, reverse=True)[:5]) or "none"
        raise BackupNotFound(f"no config backup {backup_id!r} in {self.backup_dir} (newest: {known})"
                             if backup_id else f"no config backups in {self.backup_dir}")

    def _verified_content(self, info: BackupInfo) -> bytes:
        data = info.path.read_bytes()
        if _sha256(data) != info.sha256:
            raise BackupCorrupt(f"backup {info.id}: content sha256 {_sha256(data)} != recorded {info.sha256}")
        return data

    def _backup_if_present(self, reason: str) -> BackupInfo | None:
        return self.backup(reason) if self.config_path.exists() else None

    def _install(self, data: bytes, expected_sha256: str) -> None:
        mode = self.config_path.stat().st_mode & 0o7777 if self.config_path.exists() else 0o644
        atomic_write_bytes(self.config_path, data, mode=mode)
        written = _sha256(self.config_path.read_bytes())
        if written != expected_sha256:
            raise BackupCorrupt(f"{self.config_path}: sha256 after restore {written} != {expected_sha256}")
