"""SystemdInstance: a real systemd 252 as PID 1 in private namespaces, one per test.

    with SystemdInstance(InstanceSpec(units={"ishowttsd.service": text})) as sd:
        sd.add_system_user("ishowtts", home="/var/lib/ishowttsd")
        sd.systemctl("start", "ishowttsd")
        sd.wait_active("ishowttsd", timeout=120)

Everything the instance changes lives in overlays and tmpfs mounts of its own mount namespace; its
processes live in one cgroup that teardown kills and removes. Teardown then checks that no
process, cgroup or mount is left and raises LeftoverError if one is.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from sysboot import INSIDE_HARNESS, NS_PATH, InstanceSpec, boot_script, launcher_argv, prepare_layers
from syscgroup import CgroupLeaf
from sysunits import write_unit_dir

NS_ENV = {"PATH": NS_PATH, "LANG": "C.UTF-8", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""}
BOOT_TIMEOUT_S = 30.0
EXIT_TIMEOUT_S = 15.0


class CommandFailed(subprocess.CalledProcessError):
    """A command inside the instance failed; its message carries the command's output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- stdout:\n{self.stdout[-3000:]}\n--- stderr:\n{self.stderr[-3000:]}"


class LeftoverError(AssertionError):
    """Something of a torn-down instance is still on the host."""


class SystemdInstance:
    """Boots on __enter__ (or start()), tears down on __exit__ (or stop())."""

    def __init__(self, spec: InstanceSpec, base: Path = Path("/tmp"),
                 exit_timeout: float = EXIT_TIMEOUT_S) -> None:
        self.spec = spec
        self.exit_timeout = exit_timeout
        self.name = uuid.uuid4().hex[:12]
        self.work = Path(tempfile.mkdtemp(prefix=f"ishowttsd-systest-{self.name}-", dir=base))
        self.cgroup = CgroupLeaf(self.name)
        self.pid = 0
        self._launcher: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SystemdInstance:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        write_unit_dir(self.work / "harness" / "units", self.spec.units, self.spec.links)
        (self.work / "harness" / "share").mkdir()
        prepare_layers(self.spec, self.work)
        script = self.work / "boot.sh"
        script.write_text(boot_script(self.spec, self.work))
        self.cgroup.create()
        with open(self.work / "console.log", "wb") as console:
            self._launcher = subprocess.Popen(
                launcher_argv(self.cgroup.procs_file(), script), stdout=console,
                stderr=subprocess.STDOUT, env={"PATH": NS_PATH}, start_new_session=True)
        self.pid = self._find_systemd_pid()
        self.wait_for(self._booted, BOOT_TIMEOUT_S, "systemd to finish booting")

    def stop(self) -> None:
        """Exit systemd (kill it if it does not), kill the cgroup, check and clean up."""
        if self._launcher is not None and self._launcher.poll() is None:
            self._exit_systemd()
        self.cgroup.kill_and_remove()
        if self._launcher is not None:
            self._launcher.wait(timeout=EXIT_TIMEOUT_S)
        try:
            self._check_no_leftovers()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def console_log(self) -> str:
        return (self.work / "console.log").read_text(errors="replace")

    # -- running things inside ---------------------------------------------------------------
    def run(self, *argv: str, check: bool = True, timeout: float = 60.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run argv as root inside the instance (all its namespaces, its root and cwd)."""
        command = ["nsenter", "-t", str(self.pid), "-a", *argv]
        result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout,
                                input=input, env=NS_ENV)
        if check and result.returncode != 0:
            raise CommandFailed(result.returncode, list(argv), result.stdout, result.stderr)
        return result

    def run_as(self, user: str, *argv: str, check: bool = True,
               timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run argv inside the instance as `user` (uid, primary gid and supplementary groups)."""
        uid, gid = self.user_ids(user)
        setpriv = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--init-groups", "--"]
        return self.run(*setpriv, *argv, check=check, timeout=timeout)

    def spawn_as(self, user: str, *argv: str) -> subprocess.Popen[str]:
        """Start argv inside the instance as `user` without waiting (stdout/stderr piped)."""
        uid, gid = self.user_ids(user)
        command = ["nsenter", "-t", str(self.pid), "-a", "setpriv", f"--reuid={uid}", f"--regid={gid}",
                   "--init-groups", "--", *argv]
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=NS_ENV)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def journalctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("journalctl", "--no-pager", *args)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "--value", "-p", prop, unit).stdout.strip()

    def daemon_reload(self) -> None:
        self.systemctl("daemon-reload")

    # -- waiting ---------------------------------------------------------------------------------
    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.1)

    def wait_active(self, unit: str, timeout: float) -> None:
        """Wait until `unit` is active; fail at once if it fails instead."""
        def active() -> bool:
            state = self.show(unit, "ActiveState")
            if state == "failed":
                raise AssertionError(f"{unit} failed:\n{self.unit_journal(unit)}")
            return state == "active"
        self.wait_for(active, timeout, f"{unit} to become active")

    def wait_state(self, unit: str, prop: str, value: str, timeout: float) -> None:
        self.wait_for(lambda: self.show(unit, prop) == value, timeout, f"{unit} {prop}={value}")

    def unit_journal(self, unit: str) -> str:
        return self.run("journalctl", "--no-pager", "-u", unit, "-n", "80", check=False).stdout

    # -- files and users ---------------------------------------------------------------------
    def path(self, inside: str | Path) -> Path:
        """Host path of a file as the instance sees it (through /proc/PID/root)."""
        return Path(f"/proc/{self.pid}/root") / Path(inside).relative_to("/")

    def write_file(self, inside: str | Path, text: str, mode: int = 0o644) -> None:
        target = self.path(inside)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(mode)

    def share(self, host_file: Path) -> Path:
        """Copy a host file into the instance; returns its path inside."""
        shutil.copy2(host_file, self.work / "harness" / "share" / host_file.name)
        return INSIDE_HARNESS / "share" / host_file.name

    def add_system_user(self, name: str, home: str, groups: tuple[str, ...] = ()) -> None:
        argv = ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home,
                "--shell", "/usr/sbin/nologin"]
        if groups:
            argv += ["--groups", ",".join(groups)]
        self.run(*argv, name)

    def user_ids(self, user: str) -> tuple[int, int]:
        fields = self.run("getent", "passwd", user).stdout.split(":")
        return int(fields[2]), int(fields[3])

    # -- internals -----------------------------------------------------------------------------
    def _find_systemd_pid(self) -> int:
        assert self._launcher is not None
        launcher = self._launcher.pid
        found: list[int] = []

        def systemd_child() -> bool:
            if self._launcher is not None and self._launcher.poll() is not None:
                raise RuntimeError(f"instance launcher exited early:\n{self.console_log()}")
            found[:] = [pid for pid in _children(launcher) if _comm(pid) == "systemd"]
            return bool(found)

        self.wait_for(systemd_child, BOOT_TIMEOUT_S, "systemd to be exec'd as PID 1")
        return found[0]

    def _booted(self) -> bool:
        state = self.run("systemctl", "is-system-running", check=False, timeout=10).stdout.strip()
        return state in ("running", "degraded")

    def _exit_systemd(self) -> None:
        assert self._launcher is not None
        if self.pid:
            self.run("systemctl", "exit", "0", check=False, timeout=EXIT_TIMEOUT_S)
        try:
            self._launcher.wait(timeout=self.exit_timeout)
        except subprocess.TimeoutExpired:
            # Killing the namespace's PID 1 kills everything in it; unshare (the launcher) then
            # reaps it and exits. Only after that may cgroup.kill run, or PID 1 is left a zombie.
            os.kill(self.pid or self._launcher.pid, signal.SIGKILL)
            self._launcher.wait(timeout=EXIT_TIMEOUT_S)

    def _check_no_leftovers(self) -> None:
        problems = []
        if self.pid and Path(f"/proc/{self.pid}").exists() and _comm(self.pid) == "systemd":
            problems.append(f"systemd (pid {self.pid}) still running")
        if self.cgroup.path.exists():
            problems.append(f"cgroup {self.cgroup.path} still exists")
        mounts = Path("/proc/self/mountinfo").read_text()
        if str(self.work) in mounts:
            problems.append(f"a host mount refers to {self.work}")
        if problems:
            raise LeftoverError("; ".join(problems))


def _children(parent: int) -> list[int]:
    children = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(line for line in status.read_text().splitlines() if line.startswith("PPid:"))
        except (OSError, StopIteration):
            continue
        if int(ppid.split()[1]) == parent:
            children.append(int(status.parent.name))
    return children


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
