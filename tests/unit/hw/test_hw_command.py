"""CommandRunner against real tiny processes: exit codes, retries, timeouts, missing tools."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from ishowttsd.hw.command import CommandRunner

PROMPT = "printf 'overwrite? '; read answer || echo EOF"


def quick_runner(timeout_s: float = 5.0, retries: int = 0, **kwargs: object) -> CommandRunner:
    return CommandRunner(timeout_s, retries, backoff_s=0.01, **kwargs)  # type: ignore[arg-type]


def test_success_captures_stdout_stderr_in_one_attempt() -> None:
    result = quick_runner().run(["sh", "-c", "echo out; echo err >&2"])
    assert result.ok and result.returncode == 0 and result.attempts == 1
    assert (result.stdout, result.stderr) == ("out\n", "err\n")
    assert not result.timed_out and not result.missing


def test_nonzero_exit_is_retried_then_reported() -> None:
    result = quick_runner(retries=2).run(["sh", "-c", "echo bad >&2; exit 3"])
    assert result.returncode == 3 and not result.ok
    assert result.attempts == 3
    assert result.describe() == "sh -c echo bad >&2; exit 3: exit 3 bad"


def test_backoff_doubles_between_attempts() -> None:
    slept: list[float] = []
    runner = CommandRunner(5.0, 3, backoff_s=0.5, sleep=slept.append)
    runner.run(["sh", "-c", "exit 1"])
    assert slept == [0.5, 1.0, 2.0]


def test_flaky_command_succeeds_on_second_attempt(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    script = f'n=$(cat {counter} 2>/dev/null || echo 0); echo $((n+1)) > {counter}; [ "$n" -ge 1 ]'
    result = quick_runner(retries=3).run(["sh", "-c", script])
    assert result.ok and result.attempts == 2
    assert counter.read_text().strip() == "2"


def test_timeout_kills_and_reports() -> None:
    started = time.monotonic()
    result = quick_runner(timeout_s=0.2).run(["sleep", "5"])
    assert result.timed_out and result.returncode is None and not result.ok
    assert time.monotonic() - started < 2.0
    assert "timed out after 1 attempt" in result.describe()


def test_timeout_kills_the_whole_process_group() -> None:
    started = time.monotonic()  # a grandchild holding stdout must not keep us waiting
    result = quick_runner(timeout_s=0.2).run(["sh", "-c", "sleep 5; echo never"])
    assert result.timed_out and "never" not in result.stdout
    assert time.monotonic() - started < 2.0


def test_timeouts_are_retried() -> None:
    result = quick_runner(timeout_s=0.1, retries=1).run(["sleep", "5"])
    assert result.timed_out and result.attempts == 2


def test_missing_binary_is_a_result_not_an_exception() -> None:
    result = quick_runner(retries=3).run(["surely-not-an-installed-tool", "--show"])
    assert result.missing and result.returncode is None and result.attempts == 0
    assert result.describe() == "surely-not-an-installed-tool: not found"
    assert not quick_runner().available("surely-not-an-installed-tool")


def test_stdin_is_devnull_so_prompts_read_eof() -> None:
    read_end, write_end = os.pipe()  # our own stdin becomes a pipe nobody writes to:
    saved = os.dup(0)                # a child inheriting it would block on the prompt
    os.dup2(read_end, 0)
    try:
        result = quick_runner(timeout_s=2.0).run(["sh", "-c", PROMPT])
    finally:
        os.dup2(saved, 0)
        for fd in (saved, read_end, write_end):
            os.close(fd)
    assert result.ok and result.stdout == "overwrite? EOF\n"


def test_no_shell_interpretation_of_arguments() -> None:
    result = quick_runner().run(["echo", "$HOME; ls *"])
    assert result.stdout == "$HOME; ls *\n"


def test_injected_which_resolves_the_program() -> None:
    sh = shutil.which("sh")
    runner = quick_runner(which=lambda name: sh if name == "mytool" else None)
    result = runner.run(["mytool", "-c", "exit 0"])
    assert result.ok and result.argv == ("mytool", "-c", "exit 0")
    assert runner.available("mytool") and not runner.available("sh")


def test_unexecutable_program_fails_once_without_retry(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("not a program\n")
    tool.chmod(0o644)
    result = quick_runner(retries=2, which=lambda name: str(tool)).run(["tool"])
    assert result.returncode is None and result.attempts == 1 and not result.timed_out
    assert "cannot execute" in result.stderr
