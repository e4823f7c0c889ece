"""Chunk buffers shared with the writer process: in ``/dev/shm`` when it fits, else file-backed.

A buffer is a file both processes map. Docker's default ``/dev/shm`` is 64 MB and one chunk buffer
is 6.4 MB (Atari) to 14.7 MB (VizDoom), eight of them a recorder; VizDoom's engine needs shm too.
Writing to a tmpfs page that cannot be allocated kills the process with SIGBUS, so every buffer's
pages are reserved with ``posix_fallocate`` before it is mapped: a full tmpfs is an ENOSPC here,
never a signal later. A buffer that would leave less than ``SHM_RESERVE`` of ``/dev/shm`` free, or
whose reservation fails, is made as a file in the spill directory instead (the page cache; slower
only under memory pressure), and the recorder says so once.

Buffers are named ``gymrec_<pid>_<random>_<n>``. The writer process removes a dead recorder's; a
recorder removes any whose pid is gone when it starts (a SIGKILL of the whole group leaves them).
"""

from __future__ import annotations

import errno
import logging
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import psutil

log = logging.getLogger(__name__)
SHM_DIR = Path("/dev/shm")  # where POSIX shared memory lives on Linux
SHM_RESERVE = 24 * 2**20  # bytes of /dev/shm left to others (VizDoom's engine, other recorders)
SEGMENT_PREFIX = "gymrec_"  # + the sink's tag + a number
_OWNER = re.compile(rf"^{SEGMENT_PREFIX}(\d+)_[0-9a-f]+_\d+$")
_NO_ROOM = (errno.ENOSPC, errno.EFBIG, errno.ENOMEM, errno.EOPNOTSUPP, errno.EACCES, errno.EPERM, errno.EROFS)


@dataclass
class Buffer:
    path: Path
    map: mmap.mmap

    def close(self, unlink: bool) -> None:
        self.map.close()
        if unlink:
            self.path.unlink(missing_ok=True)


def _make(path: Path, size: int) -> Buffer:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)  # ENOSPC now rather than SIGBUS on first touch
        return Buffer(path, mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE))
    except OSError:
        path.unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def attach(path: str) -> mmap.mmap:
    """The writer process's view of a buffer the recorder made."""
    fd = os.open(path, os.O_RDWR)
    try:
        return mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)


def _shm_free(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return 0
    return st.f_bavail * st.f_frsize


@dataclass
class Buffers:
    """The buffers one sink made; ``close()`` removes them."""

    tag: str
    spill_dir: Path
    shm_dir: Path = SHM_DIR
    made: list[Buffer] = field(default_factory=list)
    spilled: bool = False

    def create(self, size: int) -> Buffer:
        name = f"{SEGMENT_PREFIX}{self.tag}_{len(self.made)}"
        free = _shm_free(self.shm_dir)
        if free - size >= SHM_RESERVE:
            try:
                buffer = _make(self.shm_dir / name, size)
                self.made.append(buffer)
                return buffer
            except OSError as e:
                if e.errno not in _NO_ROOM:
                    raise
                free = 0
        if not self.spilled:
            self.spilled = True
            log.warning("%s has %d MB free and a chunk buffer needs %d MB: buffering in files under %s instead",
                        self.shm_dir, free // 2**20, -(-size // 2**20), self.spill_dir)
        buffer = _make(self.spill_dir / name, size)
        self.made.append(buffer)
        return buffer

    def close(self) -> None:
        for buffer in self.made:
            buffer.close(unlink=True)
        self.made = []


def remove_dead(directories: tuple[Path, ...]) -> int:
    """Unlink buffers whose recorder is gone (a killed process group leaves them); how many."""
    removed = 0
    for directory in directories:
        try:
            entries = list(directory.iterdir())
        except OSError:
            continue
        for path in entries:
            match = _OWNER.match(path.name)
            if match and not psutil.pid_exists(int(match[1])):
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        log.info("removed %d chunk buffer(s) left by dead recorders", removed)
    return removed
