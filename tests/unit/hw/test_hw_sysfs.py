"""Sysfs: reads/writes under an injectable root, typed errors from real OS failures.

Permission denial is real, not mocked: as root the test drops its effective uid to nobody
(seteuid(65534)) around the access, so the kernel's DAC check applies; as a normal user a
chmod 000 file is enough. The files live in a world-traversable temp dir for that reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ishowttsd.hw.sysfs import Sysfs, SysfsInvalid, SysfsMissing, SysfsPermissionDenied, typed_error

NOBODY = 65534


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block without root's DAC override (seteuid to nobody when we are root)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A temp dir every uid can traverse (pytest's tmp_path is 0700 under root)."""
    path = Path(tempfile.mkdtemp(prefix="hw-sysfs-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.fixture
def sysfs(tmp_path: Path) -> Sysfs:
    (tmp_path / "sys/class/devfreq/gpu").mkdir(parents=True)
    (tmp_path / "sys/class/devfreq/gpu/cur_freq").write_text("1300500000\n")
    (tmp_path / "sys/class/devfreq/gpu/available_frequencies").write_text("114750000 216750000 \n")
    (tmp_path / "sys/class/devfreq/gpu/name").write_bytes(b"gv11b\x00")
    (tmp_path / "sys/class/devfreq/gpu/limit").write_text("32760 ma\n")
    (tmp_path / "sys/class/devfreq/gpu/bad").write_text("fast\n")
    return Sysfs(tmp_path)


def test_reads_text_int_and_int_lists_under_root(sysfs: Sysfs) -> None:
    assert sysfs.read_int("sys/class/devfreq/gpu/cur_freq") == 1300500000
    assert sysfs.read_ints("sys/class/devfreq/gpu/available_frequencies") == [114750000, 216750000]
    assert sysfs.read_text("sys/class/devfreq/gpu/name") == "gv11b"  # device-tree NUL stripped
    assert sysfs.read_int("sys/class/devfreq/gpu/limit") == 32760  # value with a unit suffix


def test_leading_slash_stays_under_root_and_dotdot_is_refused(sysfs: Sysfs) -> None:
    assert sysfs.path("/sys/class") == sysfs.root / "sys/class"
    assert sysfs.read_int("/sys/class/devfreq/gpu/cur_freq") == 1300500000
    with pytest.raises(ValueError, match="leaves the sysfs root"):
        sysfs.path("sys/../../etc/passwd")


def test_missing_file_and_missing_directory_are_sysfs_missing(sysfs: Sysfs) -> None:
    with pytest.raises(SysfsMissing):
        sysfs.read_text("sys/class/devfreq/gpu/nope")
    with pytest.raises(SysfsMissing):
        sysfs.read_text("sys/class/devfreq/gpu/cur_freq/below_a_file")


def test_directory_where_a_file_is_expected_is_invalid(sysfs: Sysfs) -> None:
    with pytest.raises(SysfsInvalid):
        sysfs.read_text("sys/class/devfreq/gpu")


def test_unparsable_integer_is_invalid_with_the_text(sysfs: Sysfs) -> None:
    with pytest.raises(SysfsInvalid, match="not an integer: 'fast'"):
        sysfs.read_int("sys/class/devfreq/gpu/bad")


def test_write_replaces_value_and_never_creates_files(sysfs: Sysfs) -> None:
    sysfs.write_text("sys/class/devfreq/gpu/cur_freq", "114750000")
    assert sysfs.read_int("sys/class/devfreq/gpu/cur_freq") == 114750000
    with pytest.raises(SysfsMissing):
        sysfs.write_text("sys/class/devfreq/gpu/new_knob", "1")
    assert not sysfs.exists("sys/class/devfreq/gpu/new_knob")


def test_glob_returns_sorted_root_relative_paths(sysfs: Sysfs) -> None:
    (sysfs.root / "sys/class/devfreq/a.vic").mkdir()
    assert sysfs.glob("sys/class/devfreq/*") == ["sys/class/devfreq/a.vic", "sys/class/devfreq/gpu"]
    assert sysfs.glob("/sys/class/devfreq/*/cur_freq") == ["sys/class/devfreq/gpu/cur_freq"]
    assert sysfs.is_dir("sys/class/devfreq/gpu") and not sysfs.is_dir("sys/class/devfreq/gpu/cur_freq")


def test_link_name_reads_the_target_without_following_it(sysfs: Sysfs) -> None:
    link = sysfs.root / "sys/class/devfreq/gpu/of_node"
    link.symlink_to("../../../firmware/devicetree/base/gpu@17000000")
    assert sysfs.link_name("sys/class/devfreq/gpu/of_node") == "gpu@17000000"
    with pytest.raises(SysfsInvalid):  # a plain file is not a link (EINVAL)
        sysfs.link_name("sys/class/devfreq/gpu/cur_freq")


def test_real_permission_denied_on_read_and_write(open_dir: Path) -> None:
    (open_dir / "readable").write_text("1\n")
    (open_dir / "secret").write_text("2\n")
    (open_dir / "secret").chmod(0o000)
    sysfs = Sysfs(open_dir)
    with unprivileged():
        assert sysfs.read_int("readable") == 1
        with pytest.raises(SysfsPermissionDenied) as denied:
            sysfs.read_text("secret")
        with pytest.raises(SysfsPermissionDenied):
            sysfs.write_text("readable", "5")
    assert denied.value.path == open_dir / "secret"
    assert sysfs.read_int("readable") == 1


def test_errno_table_maps_eperm_like_eacces() -> None:
    error = typed_error(Path("/x"), PermissionError(1, "Operation not permitted"))
    assert isinstance(error, SysfsPermissionDenied) and error.reason == "Operation not permitted"
    assert isinstance(typed_error(Path("/x"), OSError(5, "Input/output error")), SysfsInvalid)
