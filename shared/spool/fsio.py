"""Durable file writes: the one atomic-write helper, and directory fsyncs.

A rename is atomic but not durable: after a power cut the directory may still hold the old name,
and the new file may be there with no data in it. So, as zarr's ``storage/_local.py`` does: write a
temp file in the same directory, fsync it, rename it over the target, then fsync the directory
that holds both names. After ``atomic_write`` returns, a power cut leaves either the old content or
the new, whole.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make the names in directory ``path`` (creations, renames, unlinks) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_mkdir(path: Path) -> None:
    """``mkdir -p`` whose new directories survive a power cut: each new one's parent is fsynced.

    A file renamed into a directory whose own entry was never made durable vanishes with it.
    """
    missing = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        folder.mkdir(exist_ok=True)
        fsync_dir(folder.parent)


def atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Replace ``path`` with ``data``: readers see the old bytes or the new, never a mix.

    ``durable=False`` skips both fsyncs, for files whose durability a later, wider fsync provides
    (the recorder's chunk files are fsynced in one pass before the marker that counts them).
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    atomic_write(path, text.encode(), durable)


METADATA_LIMIT = 64 << 20  # a zarr.json, committed.json or journal: far below this even for hours of input


def open_regular(path: Path | str, limit: int | None = None) -> io.FileIO:
    """``path`` opened for reading, unbuffered, only if it is a regular file (of at most ``limit`` bytes).

    No poison pills in a spool or dataset: the open never blocks (O_NONBLOCK: a FIFO would wait for a
    writer forever), never follows a symlink (O_NOFOLLOW: a loop, or a link to /dev/zero), and a FIFO,
    socket, device or oversized file raises ``OSError`` here instead of hanging or filling memory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    opened = False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        if limit is not None and st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes, more than the {limit} expected", str(path))
        file = io.FileIO(fd, "rb", closefd=True)
        opened = True
        return file
    finally:
        if not opened:
            os.close(fd)


def read_regular(path: Path | str, limit: int = METADATA_LIMIT) -> bytes:
    """The bytes of the regular file ``path`` (``open_regular``'s checks)."""
    with open_regular(path, limit) as f:
        return f.readall()
