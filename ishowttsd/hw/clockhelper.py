"""Root-only GPU clock helper, run by systemd around (and for) the unprivileged daemon:

    ExecStartPre=+/usr/bin/python3 -m ishowttsd.hw.clockhelper lock --config FILE --best-effort
    ExecStopPost=+/usr/bin/python3 -m ishowttsd.hw.clockhelper restore --config FILE --best-effort
    ishowttsd-relock.service:  ... clockhelper relock --config FILE --runtime-dir /run/ishowttsd --best-effort

It reads only the [gpu] section, daemon.state_dir and daemon.socket of the config, does exactly one
of lock | verify | restore | relock, prints ONE JSON line (action, backend, ok, message, ...) and exits:
  0  success, or not applicable (no GPU, gpu.lock_clocks = false, locked clocks unsupported)
  1  the operation failed (permission denied, tool failure, write refused)
  2  usage or configuration error, or the requested backend is unavailable
  3  verify: the clocks are not (or cannot be confirmed to be) locked
--best-effort turns every non-zero status into 0 (the JSON line still tells the truth), so a
board where locking is impossible never fails the service start.

relock (R5: re-apply a drifted lock for the daemon, which cannot): verify; lock only when the lock
is not in force; verify again. Its JSON record also goes, atomically and world-readable, to
RUNTIME_DIR/relock-result.json (the daemon's clocks job reads it at its next check), and the
request the daemon left in RUNTIME_DIR/relock-request (which started ishowttsd-relock.path) is
removed, whatever happened, so the path unit does not fire again for it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ishowttsd.config import ConfigError, load_config
from ishowttsd.fsutil import atomic_write_text
from ishowttsd.hw.base import ClockResult, ClockState, GpuBackend, HardwareUnavailable
from ishowttsd.hw.detect import backend_for_config, load_pynvml

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_LOCKED = 0, 1, 2, 3
DISABLED_MESSAGE = "gpu.lock_clocks = false: clocks left alone"
DEFAULT_RUNTIME_DIR = Path("/run/ishowttsd")
RELOCK_REQUEST = "relock-request"
RELOCK_RESULT = "relock-result.json"


@dataclass(frozen=True)
class RelockOutcome:
    """What `relock` found and did: locked is the read-back after it (None: cannot tell)."""

    ok: bool
    locked: bool | None
    relocked: bool
    was_locked: bool | None
    message: str
    lock: dict[str, Any] | None = None
    permission_denied: bool = False
    not_applicable: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def _applicable(state: ClockState) -> bool:
    return not state.details.get("not_applicable", False)


def relock(backend: GpuBackend) -> RelockOutcome:
    """Verify; lock only when not locked (and applicable); verify again."""
    before = backend.verify_clocks()
    if before.locked is True or not _applicable(before):
        return RelockOutcome(ok=True, locked=before.locked, relocked=False, was_locked=before.locked,
                             message=f"no re-lock needed: {before.reason}", not_applicable=not _applicable(before),
                             details=before.details)
    result = backend.lock_clocks()
    after = backend.verify_clocks()
    ok = after.locked is True or (result.ok and after.locked is None)
    return RelockOutcome(ok=ok, locked=after.locked, relocked=result.ok and not result.not_applicable,
                         was_locked=before.locked, message=f"re-lock: {result.message}; read back: {after.reason}",
                         lock=asdict(result), permission_denied=result.permission_denied, details=after.details)


Outcome = ClockResult | ClockState | RelockOutcome
ACTIONS: dict[str, Callable[[GpuBackend], Outcome]] = {
    "lock": lambda backend: backend.lock_clocks(),
    "verify": lambda backend: backend.verify_clocks(),
    "restore": lambda backend: backend.restore_clocks(),
    "relock": relock,
}


def _state_code(state: ClockState) -> int:
    return EXIT_OK if state.locked or not _applicable(state) else EXIT_NOT_LOCKED


def _result_code(result: ClockResult | RelockOutcome) -> int:
    return EXIT_OK if result.ok or result.not_applicable else EXIT_FAILED


EXIT_CODES: dict[type, Callable[[Any], int]] = {
    ClockState: _state_code, ClockResult: _result_code, RelockOutcome: _result_code,
}


def exit_code(outcome: Outcome) -> int:
    """Exit status for one outcome (before --best-effort)."""
    return EXIT_CODES[type(outcome)](outcome)


class RelockFiles:
    """The request/answer files between the unprivileged daemon and the root relock service.

    Both live in the daemon's runtime directory (RuntimeDirectory=ishowttsd, mode 0750, group
    ishowtts): only the daemon (and root) can write a request; the root helper's answer is 0644.
    """

    def __init__(self, runtime_dir: Path) -> None:
        self.request_path = Path(runtime_dir) / RELOCK_REQUEST
        self.result_path = Path(runtime_dir) / RELOCK_RESULT

    @classmethod
    def for_config(cls, cfg: Any) -> RelockFiles:
        """The files next to the daemon's socket (/run/ishowttsd by default)."""
        return cls(Path(cfg.daemon.socket).parent)

    def write_request(self, reason: str, now_s: float) -> dict[str, Any]:
        """Daemon side: ask for a re-lock (atomically; starts ishowttsd-relock.service)."""
        request = {"id": uuid.uuid4().hex, "reason": reason, "time_s": round(now_s, 3), "pid": os.getpid()}
        atomic_write_text(self.request_path, json.dumps(request, sort_keys=True) + "\n", mode=0o640)
        return request

    def read_request(self) -> dict[str, Any] | None:
        return _read_json(self.request_path)

    def read_result(self) -> dict[str, Any] | None:
        return _read_json(self.result_path)

    def write_result(self, record: dict[str, Any]) -> None:
        """Helper side: the answer, readable by the daemon (not root's)."""
        atomic_write_text(self.result_path, json.dumps(record, sort_keys=True, default=str) + "\n", mode=0o644)

    def clear_request(self, answered: dict[str, Any] | None) -> None:
        """Remove the request just answered; a newer one (other id) written meanwhile stays."""
        current = self.read_request()
        if current is not None and (answered is None or current.get("id") == answered.get("id")):
            self.request_path.unlink(missing_ok=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from `path`; None when absent; {"unreadable": why} when garbled."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        return {"unreadable": str(exc)}
    return value if isinstance(value, dict) else {"unreadable": f"not a JSON object: {value!r}"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ishowttsd.hw.clockhelper",
                                     description="Lock, verify, restore or re-lock GPU clocks (run as root).")
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("--config", required=True, type=Path, help="ishowttsd TOML config file")
    parser.add_argument("--sysfs-root", type=Path, default=None, help="override gpu.sysfs_root")
    parser.add_argument("--runtime-dir", type=Path, default=None,
                        help="relock: where the request/result files are (default: the socket's directory)")
    parser.add_argument("--best-effort", action="store_true", help="exit 0 even when the action fails")
    return parser


def run_action(action: str, config: Path, sysfs_root: Path | None,
               nvml_loader: Callable[[], Any]) -> tuple[dict[str, Any], int]:
    """Do the action; returns the JSON record and the exit status. Never raises for hardware."""
    cfg = load_config(config)
    if action != "verify" and not cfg.gpu.lock_clocks:
        skipped = ClockResult(ok=True, message=DISABLED_MESSAGE, not_applicable=True)
        return {"action": action, "backend": None, **asdict(skipped)}, exit_code(skipped)
    backend = backend_for_config(cfg, nvml_loader=nvml_loader, sysfs_root=sysfs_root)
    try:
        outcome = ACTIONS[action](backend)
    finally:
        backend.close()
    return {"action": action, "backend": backend.name, **asdict(outcome)}, exit_code(outcome)


def _error_record(action: str, error: str) -> dict[str, Any]:
    return {"action": action, "ok": False, "error": error}


def guarded_action(args: argparse.Namespace, nvml_loader: Callable[[], Any]) -> tuple[dict[str, Any], int]:
    """run_action, with every failure turned into an error record and a status."""
    try:
        return run_action(args.action, args.config, args.sysfs_root, nvml_loader)
    except (ConfigError, HardwareUnavailable, ValueError) as exc:
        return _error_record(args.action, str(exc)), EXIT_USAGE
    except Exception as exc:  # a bug must not fail the service start under --best-effort
        return _error_record(args.action, f"internal error: {exc!r}"), EXIT_FAILED


def runtime_dir_for(args: argparse.Namespace) -> Path:
    """--runtime-dir, else the configured socket's directory, else /run/ishowttsd."""
    if args.runtime_dir is not None:
        return Path(args.runtime_dir)
    try:
        return Path(load_config(args.config).daemon.socket).parent
    except (ConfigError, ValueError):
        return DEFAULT_RUNTIME_DIR


def answered_relock(args: argparse.Namespace, nvml_loader: Callable[[], Any]) -> tuple[dict[str, Any], int]:
    """relock: act, answer the daemon's request in the result file, remove the request."""
    files = RelockFiles(runtime_dir_for(args))
    request = files.read_request()
    record, status = guarded_action(args, nvml_loader)
    record.update(request=request, time_s=round(time.time(), 3), best_effort=args.best_effort)
    try:
        files.write_result(record)
        files.clear_request(request)
    except OSError as exc:
        record["result_error"] = f"cannot answer in {files.result_path.parent}: {exc}"
        status = status or EXIT_FAILED
    return record, status


Runner = Callable[[argparse.Namespace, Callable[[], Any]], tuple[dict[str, Any], int]]
RUNNERS: dict[str, Runner] = {"relock": answered_relock}


def main(argv: Sequence[str] | None = None, nvml_loader: Callable[[], Any] = load_pynvml,
         out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    record, status = RUNNERS.get(args.action, guarded_action)(args, nvml_loader)
    record["best_effort"] = args.best_effort
    print(json.dumps(record, sort_keys=True, default=str), file=out or sys.stdout, flush=True)
    return EXIT_OK if args.best_effort else status


if __name__ == "__main__":
    sys.exit(main())
