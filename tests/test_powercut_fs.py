"""The power-cut filesystem itself (tests/powercut): it must lose exactly what was not made durable.

R7 (tests/test_reliability_power.py) is only as good as this model, so it is checked on its own:
first the pure model, then the same rules through a real FUSE mount with real syscalls (write,
rename, mmap + msync, flock), so the kernel's part (page cache, writeback) is covered too.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from gymrec.shared.spool.fsio import fsync_file
from tests.powercut.disk import Disk
from tests.powercut.mount import PowerCutMount, power_cut_mount


def _file(disk: Disk, path: str, data: bytes, sync: bool) -> int:
    ino = disk.create(path, 0o644)
    disk.write(ino, data, 0)
    if sync:
        disk.fsync(ino)
    return ino


def _sync_dir(disk: Disk, path: str) -> None:
    disk.fsync(disk.lookup(path))


def _read(disk: Disk, path: str) -> bytes:
    ino = disk.lookup(path)
    return disk.read(ino, 1 << 20, 0)


def test_unsynced_data_and_names_disappear_synced_ones_survive() -> None:
    disk = Disk()
    disk.mkdir("/d", 0o755)
    _sync_dir(disk, "/")
    _file(disk, "/d/synced", b"kept", sync=True)
    _file(disk, "/d/unsynced", b"lost", sync=False)
    _sync_dir(disk, "/d")
    _file(disk, "/d/never-named", b"its name was never synced", sync=True)
    ino = disk.lookup("/d/synced")
    disk.write(ino, b"KEPT and more", 0)  # after its fsync: volatile
    disk.power_cut()
    assert sorted(disk.listdir(disk.lookup("/d"))) == ["synced", "unsynced"]
    assert _read(disk, "/d/synced") == b"kept"
    assert _read(disk, "/d/unsynced") == b""  # its name was durable, its data never was


def test_a_directory_never_synced_comes_back_empty_and_its_subtree_is_gone() -> None:
    disk = Disk()
    disk.mkdir("/a", 0o755)
    disk.mkdir("/a/b", 0o755)
    _file(disk, "/a/b/f", b"x", sync=True)
    _sync_dir(disk, "/a/b")
    _sync_dir(disk, "/")  # /a is named, but /a itself never synced: b is not in it
    disk.power_cut()
    assert disk.listdir(disk.lookup("/a")) == []
    with pytest.raises(FileNotFoundError):
        disk.lookup("/a/b/f")


def test_a_rename_without_a_directory_fsync_is_undone() -> None:
    disk = Disk()
    _file(disk, "/old", b"data", sync=True)
    _sync_dir(disk, "/")
    disk.rename("/old", "/new")
    assert disk.listdir(1) == ["new"]
    disk.power_cut()
    assert disk.listdir(1) == ["old"]
    assert _read(disk, "/old") == b"data"


def test_an_atomic_replace_without_a_directory_fsync_leaves_the_old_file() -> None:
    disk = Disk()
    _file(disk, "/marker", b"old", sync=True)
    _sync_dir(disk, "/")
    _file(disk, "/.marker.tmp", b"new", sync=True)
    disk.rename("/.marker.tmp", "/marker")
    disk.power_cut()
    assert disk.listdir(1) == ["marker"]
    assert _read(disk, "/marker") == b"old"


def test_a_rename_is_atomic_once_its_target_directory_is_synced() -> None:
    disk = Disk()
    for d in ("/src", "/dst"):
        disk.mkdir(d, 0o755)
    _sync_dir(disk, "/")
    _file(disk, "/src/f", b"data", sync=True)
    _sync_dir(disk, "/src")
    disk.rename("/src/f", "/dst/f")
    _sync_dir(disk, "/dst")  # the source directory is never synced again
    disk.power_cut()
    assert disk.listdir(disk.lookup("/src")) == []  # not in both places
    assert _read(disk, "/dst/f") == b"data"


def test_syncing_only_the_source_directory_of_a_rename_loses_the_entry() -> None:
    disk = Disk()
    for d in ("/src", "/dst"):
        disk.mkdir(d, 0o755)
    _sync_dir(disk, "/")
    _file(disk, "/src/f", b"data", sync=True)
    _sync_dir(disk, "/src")
    _sync_dir(disk, "/dst")
    disk.rename("/src/f", "/dst/f")
    _sync_dir(disk, "/src")
    disk.power_cut()
    assert disk.listdir(disk.lookup("/src")) == [] and disk.listdir(disk.lookup("/dst")) == []


def test_rename_follows_posix_for_directories() -> None:
    disk = Disk()
    for d in ("/a", "/b", "/b/x"):
        disk.mkdir(d, 0o755)
    with pytest.raises(OSError) as e:
        disk.rename("/a", "/b")  # onto a non-empty directory: how two claimers tell who won
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        disk.rename("/b", "/b/x/y")
    assert e.value.errno == errno.EINVAL
    disk.rename("/a", "/b/x")  # onto an empty one: replaced
    assert disk.listdir(disk.lookup("/b")) == ["x"]


def test_a_frozen_disk_fails_everything_with_eio_until_the_cut() -> None:
    disk = Disk()
    _file(disk, "/f", b"data", sync=True)
    _sync_dir(disk, "/")
    disk.freeze()
    for attempt in (lambda: disk.lookup("/f"), lambda: disk.create("/g", 0o644), lambda: disk.fsync(1)):
        with pytest.raises(OSError) as e:
            attempt()
        assert e.value.errno == errno.EIO
    report = disk.power_cut()
    assert _read(disk, "/f") == b"data"
    assert (report.files_kept, report.entries_dropped) == (1, 0)


# --- the same rules through a real mount -------------------------------------------------------------


@pytest.fixture
def mount(tmp_path: Path) -> Iterator[PowerCutMount]:
    with power_cut_mount(tmp_path / "mnt", tmp_path / "powercut.log") as mounted:
        yield mounted


def test_through_fuse_only_fsynced_data_and_entries_survive(mount: PowerCutMount) -> None:
    root = mount.path
    (root / "d").mkdir()
    fsync_file(root)
    (root / "d" / "volatile").write_bytes(b"page cache only")
    with open(root / "d" / "durable", "wb") as f:
        f.write(b"fsynced")
        f.flush()  # out of Python's buffer: fsync only sees what reached the kernel
        os.fsync(f.fileno())
    fsync_file(root / "d")
    os.rename(root / "d" / "durable", root / "d" / "renamed")  # no directory fsync after it
    assert (root / "d" / "volatile").read_bytes() == b"page cache only"  # visible at once
    mount.freeze()
    with pytest.raises(OSError) as e:
        os.listdir(root / "d")
    assert e.value.errno == errno.EIO
    report = mount.cut()
    assert sorted(os.listdir(root / "d")) == ["durable", "volatile"]
    assert (root / "d" / "durable").read_bytes() == b"fsynced"
    assert (root / "d" / "volatile").read_bytes() == b""
    assert report["unsynced_bytes_dropped"] >= len(b"page cache only")
    assert report["entries_dropped"] == 1  # "renamed" (the name "durable" came back)


def test_through_fuse_an_msync_makes_a_shared_map_durable_and_flock_works(mount: PowerCutMount) -> None:
    """The recorder's journal: stores into a MAP_SHARED map, synced with msync at chunk boundaries."""
    path = mount.path / "journal.bin"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # the writer lock: the kernel does it locally
        os.posix_fallocate(fd, 0, 8192)
        journal = mmap.mmap(fd, 8192, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        journal[0:6] = b"synced"
        journal.flush()  # msync(MS_SYNC): FUSE sees the page's write, then an fsync
        journal[6:14] = b"+pending"
        assert path.read_bytes()[:14] == b"synced+pending"  # other readers see the page cache
        fsync_file(mount.path)
        journal.close()
    finally:
        os.close(fd)
    mount.freeze()
    mount.cut()
    data = path.read_bytes()
    assert len(data) == 8192
    assert data[:14] == b"synced" + bytes(8)
    assert mount.stats()["fsync"] >= 1
