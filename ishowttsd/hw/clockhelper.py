"""Root-only GPU clock helper, run by systemd around the unprivileged daemon:

    ExecStartPre=+/usr/bin/python3 -m ishowttsd.hw.clockhelper lock --config FILE --best-effort
    ExecStopPost=+/usr/bin/python3 -m ishowttsd.hw.clockhelper restore --config FILE --best-effort

It reads only the [gpu] section and daemon.state_dir of the config, does exactly one of
lock | verify | restore, prints ONE JSON line (action, backend, ok, message, ...) and exits:
  0  success, or not applicable (no GPU, gpu.lock_clocks = false, locked clocks unsupported)
  1  the operation failed (permission denied, tool failure, write refused)
  2  usage or configuration error, or the requested backend is unavailable
  3  verify: the clocks are not (or cannot be confirmed to be) locked
--best-effort turns every non-zero status into 0 (the JSON line still tells the truth), so a
board where locking is impossible never fails the service start.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from ishowttsd.config import ConfigError, load_config
from ishowttsd.hw.base import ClockResult, ClockState, GpuBackend, HardwareUnavailable
from ishowttsd.hw.detect import backend_for_config, load_pynvml

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_LOCKED = 0, 1, 2, 3
ACTIONS: dict[str, Callable[[GpuBackend], ClockResult | ClockState]] = {
    "lock": lambda backend: backend.lock_clocks(),
    "verify": lambda backend: backend.verify_clocks(),
    "restore": lambda backend: backend.restore_clocks(),
}
DISABLED_MESSAGE = "gpu.lock_clocks = false: clocks left alone"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ishowttsd.hw.clockhelper",
                                     description="Lock, verify or restore GPU clocks (run as root).")
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("--config", required=True, type=Path, help="ishowttsd TOML config file")
    parser.add_argument("--sysfs-root", type=Path, default=None, help="override gpu.sysfs_root")
    parser.add_argument("--best-effort", action="store_true", help="exit 0 even when the action fails")
    return parser


def exit_code(outcome: ClockResult | ClockState) -> int:
    """Exit status for one outcome (before --best-effort)."""
    if isinstance(outcome, ClockState):
        applicable = not outcome.details.get("not_applicable", False)
        return EXIT_OK if outcome.locked or not applicable else EXIT_NOT_LOCKED
    return EXIT_OK if outcome.ok or outcome.not_applicable else EXIT_FAILED


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


def main(argv: Sequence[str] | None = None, nvml_loader: Callable[[], Any] = load_pynvml,
         out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        record, status = run_action(args.action, args.config, args.sysfs_root, nvml_loader)
    except (ConfigError, HardwareUnavailable, ValueError) as exc:
        record, status = _error_record(args.action, str(exc)), EXIT_USAGE
    except Exception as exc:  # a bug must not fail the service start under --best-effort
        record, status = _error_record(args.action, f"internal error: {exc!r}"), EXIT_FAILED
    record["best_effort"] = args.best_effort
    print(json.dumps(record, sort_keys=True, default=str), file=out or sys.stdout, flush=True)
    return EXIT_OK if args.best_effort else status


if __name__ == "__main__":
    sys.exit(main())
