"""What each job did last (kept in memory, persisted to state_dir/jobs.json so it survives restarts)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import structlog

from ishowttsd.fsutil import atomic_write_text
from ishowttsd.jobs.context import JobOutcome

log = structlog.get_logger(__name__)
JOBS_FILE = "jobs.json"
FORMAT_VERSION = 1


@dataclass
class JobRecord:
    """Counters and the last run of one job; times are epoch seconds."""

    runs: int = 0
    failures: int = 0
    last_run: float | None = None
    last_status: str | None = None  # ok, flagged, skipped or error
    last_result: str = ""
    last_error: str = ""
    last_success: float | None = None
    last_duration_s: float | None = None
    retry_at: float | None = None
    last_details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any) -> JobRecord:
        """A record from jobs.json; unknown keys dropped, a malformed entry gives a fresh record."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{key: value for key, value in data.items() if key in known})
        except TypeError:
            return cls()


class JobRecords:
    def __init__(self, path: Path, job_ids: Iterable[str]) -> None:
        self.path = path
        self.by_id: dict[str, JobRecord] = {job_id: JobRecord() for job_id in job_ids}

    def load(self) -> None:
        """Read jobs.json (blocking; call once at start). Missing or corrupt → start fresh, logged."""
        try:
            stored = json.loads(self.path.read_text(encoding="utf-8"))["jobs"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("jobs_state_unreadable", path=str(self.path), error=str(exc))
            return
        for job_id in self.by_id:
            if isinstance(stored, dict) and job_id in stored:
                self.by_id[job_id] = JobRecord.from_dict(stored[job_id])

    def finished(self, job_id: str, started: float, duration_s: float, outcome: JobOutcome) -> JobRecord:
        record = self._ran(job_id, started, duration_s)
        record.last_status, record.last_result, record.last_error = outcome.status, outcome.summary, ""
        record.last_details = dict(outcome.details)
        if outcome.status == "ok":
            record.last_success = started + duration_s
        return record

    def failed(self, job_id: str, started: float, duration_s: float, error: str,
               retry_at: float | None) -> JobRecord:
        record = self._ran(job_id, started, duration_s)
        record.failures += 1
        record.last_status, record.last_result, record.last_error = "error", f"failed: {error}", error
        record.retry_at, record.last_details = retry_at, {}
        return record

    def _ran(self, job_id: str, started: float, duration_s: float) -> JobRecord:
        record = self.by_id[job_id]
        record.runs += 1
        record.last_run, record.last_duration_s, record.retry_at = started, round(duration_s, 3), None
        return record

    def snapshot(self) -> str:
        """The JSON text to persist (taken on the event loop, written from a thread)."""
        jobs = {job_id: asdict(record) for job_id, record in self.by_id.items()}
        return json.dumps({"version": FORMAT_VERSION, "jobs": jobs}, indent=1, default=str) + "\n"

    def save(self, text: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, text, mode=0o640)
