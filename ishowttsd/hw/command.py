"""Run external tools (nvpmodel, jetson_clocks) with a timeout, retries and no surprises.

- argv only, never a shell; stdin is /dev/null, so a tool that asks a question (jetson_clocks
  --store over an existing file, nvpmodel asking to reboot) reads EOF instead of hanging.
- The child gets its own session; on timeout the whole process group is killed, so a
  grandchild holding the output pipes cannot keep us waiting.
- A failure (non-zero exit, timeout) is retried `retries` times with exponential backoff.
- A missing binary is a result (`missing=True`), not an exception, and is not retried.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int | None
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    attempts: int = 0
    timed_out: bool = False
    missing: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """One line for logs and ClockResult messages."""
        if self.missing:
            return f"{self.argv[0]}: not found"
        if self.timed_out:
            return f"{' '.join(self.argv)}: timed out after {self.attempts} attempt(s)"
        detail = (self.stderr.strip() or self.stdout.strip()).splitlines()[-1:] or [""]
        return f"{' '.join(self.argv)}: exit {self.returncode} {detail[0]}".rstrip()


@dataclass(frozen=True)
class _Attempt:
    returncode: int | None
    stdout: str
    stderr: str
    timed_out: bool

    @property
    def failed(self) -> bool:
        """Worth retrying: a timeout or a non-zero exit (not a program that cannot be executed)."""
        return self.timed_out or self.returncode not in (0, None)


class CommandRunner:
    """Runs argv lists; `which` resolves the program (inject a PATH-bound one in tests)."""

    def __init__(self, timeout_s: float, retries: int, which: Callable[[str], str | None] = shutil.which,
                 backoff_s: float = 0.5, sleep: Callable[[float], None] = time.sleep) -> None:
        self.timeout_s = timeout_s
        self.retries = retries
        self._which = which
        self._backoff_s = backoff_s
        self._sleep = sleep

    def available(self, program: str) -> bool:
        return self._which(program) is not None

    def run(self, argv: Sequence[str]) -> CommandResult:
        argv = tuple(argv)
        executable = self._which(argv[0])
        if executable is None:
            return CommandResult(argv, None, stderr=f"{argv[0]}: command not found", missing=True)
        started = time.monotonic()
        attempt, count = self._attempt((executable, *argv[1:])), 1
        while attempt.failed and count <= self.retries:
            self._sleep(self._backoff_s * 2 ** (count - 1))
            attempt, count = self._attempt((executable, *argv[1:])), count + 1
        return CommandResult(argv, attempt.returncode, attempt.stdout, attempt.stderr,
                             time.monotonic() - started, count, attempt.timed_out)

    def _attempt(self, argv: tuple[str, ...]) -> _Attempt:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, errors="replace",
                                       start_new_session=True)
        except OSError as exc:
            return _Attempt(None, "", f"{argv[0]}: cannot execute: {exc.strerror or exc}", False)
        try:
            stdout, stderr = process.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            return self._kill(process)
        return _Attempt(process.returncode, stdout, stderr, False)

    @staticmethod
    def _kill(process: subprocess.Popen[str]) -> _Attempt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return _Attempt(None, stdout, stderr, True)
