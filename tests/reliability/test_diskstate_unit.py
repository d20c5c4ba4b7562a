"""ishowttsd.diskstate: storage failures recorded by root, cleared by a good write or freed space."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest

from ishowttsd.diskstate import (
    DiskProblem,
    DiskState,
    StorageFailure,
    guarded_write,
    guarded_writer,
    has_room,
    root_of,
)

ROOTS = ("/var/lib/ishowttsd", "/var/log/ishowttsd", "/var/lib/ishowttsd/voices")


class Disk:
    """A fake statvfs: free bytes and read-only flag per call."""

    def __init__(self, free: int = 0, read_only: bool = False) -> None:
        self.free, self.read_only = free, read_only

    def __call__(self, path: str) -> tuple[int, bool]:
        return self.free, self.read_only


def state(disk: Disk | None = None) -> DiskState:
    return DiskState(ROOTS, clock=lambda: 1000.0, min_freed_bytes=100, probe=disk or Disk())


def enospc() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def test_a_disk_error_is_recorded_against_the_deepest_root() -> None:
    tracker = state(Disk(read_only=True))
    assert tracker.record("/var/lib/ishowttsd/voices/.staging-a/ref.wav", enospc())
    assert tracker.record("/var/log/ishowttsd/memory.jsonl", OSError(errno.EROFS, "Read-only file system"))
    assert tracker.problems() == ["disk full: /var/lib/ishowttsd/voices", "read-only filesystem: /var/log/ishowttsd"]


def test_a_read_only_filesystem_clears_once_it_is_writable_again() -> None:
    disk = Disk(read_only=True)
    tracker = state(disk)
    tracker.record("/var/log/ishowttsd/x", OSError(errno.EROFS, "Read-only file system"))
    assert tracker.problems() == ["read-only filesystem: /var/log/ishowttsd"]
    disk.read_only = False
    assert tracker.problems() == []


def test_other_errors_are_not_storage_problems() -> None:
    tracker = state()
    assert not tracker.record("/var/lib/ishowttsd/x", OSError(errno.EACCES, "Permission denied"))
    assert not tracker.record("/var/lib/ishowttsd/x", ValueError("nope"))
    assert tracker.problems() == []


def test_a_good_write_under_the_root_clears_it() -> None:
    tracker = state()
    tracker.record("/var/lib/ishowttsd/jobs.json", enospc())
    tracker.clear("/var/lib/ishowttsd/config-backups/x.toml")
    assert tracker.problems() == []


def test_repeated_failures_keep_the_first_time_and_count() -> None:
    clock = iter([10.0, 20.0, 30.0])
    tracker = DiskState(ROOTS, clock=lambda: next(clock), probe=Disk())
    for _ in range(3):
        tracker.record("/var/lib/ishowttsd/a", enospc())
    (snapshot,) = tracker.snapshot()
    assert (snapshot["since"], snapshot["failures"], snapshot["errno"]) == (10.0, 3, "ENOSPC")


def test_disk_full_clears_itself_once_space_was_freed() -> None:
    disk = Disk(free=50)
    tracker = state(disk)
    tracker.record("/var/lib/ishowttsd/a", enospc())
    disk.free = 120  # 70 more: not enough
    assert tracker.problems() == ["disk full: /var/lib/ishowttsd"]
    disk.free = 150
    assert tracker.problems() == []


@pytest.mark.parametrize(("code", "free", "read_only", "over"), [
    (errno.ENOSPC, 199, False, False), (errno.ENOSPC, 200, False, True), (errno.ENOSPC, 10**9, True, False),
    (errno.EROFS, 0, True, False), (errno.EROFS, 0, False, True), (errno.EDQUOT, 10**9, False, False)])
def test_has_room(code: int, free: int, read_only: bool, over: bool) -> None:
    problem = DiskProblem("/r", code, 0.0, "/r/x", free_at_failure=100)
    assert has_room(problem, free, read_only, min_freed_bytes=100) is over


def test_root_of_falls_back_to_the_files_directory() -> None:
    assert root_of("/srv/other/file.json", ROOTS) == "/srv/other"
    assert root_of("/var/lib/ishowttsd", ROOTS) == "/var/lib/ishowttsd"
    assert root_of("/var/lib/ishowttsd-old/x", ROOTS) == "/var/lib/ishowttsd-old"


def test_guarded_write_turns_a_full_disk_into_a_storage_failure(tmp_path: Path) -> None:
    tracker = DiskState([tmp_path], probe=Disk())

    def full() -> None:
        raise enospc()

    with pytest.raises(StorageFailure) as caught:
        guarded_write(tracker, tmp_path / "voices" / "a.wav", full)
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert caught.value.problem == "disk full" and str(tmp_path) in str(caught.value)
    assert tracker.problems() == [f"disk full: {tmp_path}"]
    assert guarded_write(tracker, tmp_path / "ok", lambda: 42) == 42
    assert tracker.problems() == []


def test_guarded_write_passes_other_errors_through_untouched(tmp_path: Path) -> None:
    def denied() -> None:
        raise PermissionError(errno.EACCES, "denied")

    with pytest.raises(PermissionError):
        guarded_write(DiskState([tmp_path]), tmp_path / "x", denied)


def test_guarded_writer_wraps_a_write_file_function(tmp_path: Path) -> None:
    written: dict[Path, bytes] = {}
    tracker = DiskState([tmp_path], probe=Disk())
    write = guarded_writer(tracker, lambda path, data: written.__setitem__(path, data))
    write(tmp_path / "a", b"1")
    assert written == {tmp_path / "a": b"1"}


def test_concurrent_records_and_clears_stay_consistent() -> None:
    tracker = state()

    def hammer(index: int) -> None:
        for _ in range(500):
            tracker.record(f"/var/lib/ishowttsd/{index}", enospc())
            tracker.clear(f"/var/log/ishowttsd/{index}")

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (snapshot,) = tracker.snapshot()
    assert snapshot["failures"] == 8 * 500
