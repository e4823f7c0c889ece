"""The power-cut filesystem: ``python -m tests.powercut.daemon MOUNTPOINT``, driven over stdin.

It serves a ``tests.powercut.disk.Disk`` through FUSE (mfusepy, the high-level libfuse API) and takes
one command a line on stdin, answering each on stdout with a line starting ``powercut``:

    freeze   every further operation fails with EIO (the power is gone)
    cut      freeze, unmount, throw away what was not durable, mount again   -> "powercut mounted {...}"
    stats    the fsync counts so far                                          -> "powercut stats {...}"
    quit     unmount and exit (so does EOF on stdin: a dead test never leaves a mount behind)

Each mount is announced with ``powercut mounted {report}`` once the kernel has it (FUSE ``init``).
The Disk lives in this process across remounts: the kernel's page cache, like a real one, goes with
the unmount. Running single-threaded (``nothreads``) keeps every operation atomic against the model;
nothing here waits on the mount itself, so that cannot deadlock.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

import mfusepy

from tests.powercut.disk import CutReport, Disk

UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2  # utimensat(2)


class PowerCutFS(mfusepy.Operations):
    """FUSE operations onto the Disk. File and directory handles are inode numbers, never reused,
    so a descriptor keeps working on a file renamed or unlinked while open (``hard_remove``)."""

    use_ns = True
    # Handles suffice for fd operations: libfuse may pass no path for an unlinked open file.
    flag_nopath = True
    flag_nullpath_ok = True

    def __init__(self, disk: Disk, on_mount: Any) -> None:
        self.disk = disk
        self._on_mount = on_mount

    def _ino(self, path: str | None, fh: int | None) -> int:
        if fh:
            return fh
        if path is None:
            raise OSError(errno.EBADF, "no path and no handle")
        return self.disk.lookup(path)

    def init(self, path: str) -> None:
        self._on_mount()

    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, int]:
        return self.disk.stat(self._ino(path, fh))

    def readdir(self, path: str | None, fh: int) -> list[str]:
        return [".", "..", *self.disk.listdir(self._ino(path, fh))]

    def opendir(self, path: str) -> int:
        return self.disk.lookup(path)

    def releasedir(self, path: str | None, fh: int) -> int:
        return 0

    def mkdir(self, path: str, mode: int) -> int:
        self.disk.mkdir(path, mode)
        return 0

    def rmdir(self, path: str) -> int:
        self.disk.rmdir(path)
        return 0

    def create(self, path: str, mode: int, fi: Any = None) -> int:
        return self.disk.create(path, mode)

    def open(self, path: str, flags: int) -> int:
        ino = self.disk.lookup(path)
        if flags & os.O_TRUNC:
            self.disk.truncate(ino, 0)
        return ino

    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return self.disk.read(self._ino(path, fh), size, offset)

    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        return self.disk.write(self._ino(path, fh), bytes(data), offset)

    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        self.disk.truncate(self._ino(path, fh), length)
        return 0

    def fallocate(self, path: str | None, mode: int, offset: int, size: int, fh: int) -> int:
        if mode != 0:
            raise OSError(errno.EOPNOTSUPP, "only plain posix_fallocate")
        self.disk.allocate(self._ino(path, fh), offset, size)
        return 0

    def flush(self, path: str | None, fh: int) -> int:
        self.disk.node(fh)  # close(2) durably promises nothing, but it fails like anything else when frozen
        return 0

    def release(self, path: str | None, fh: int) -> int:
        return 0

    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        self.disk.fsync(self._ino(path, fh))
        return 0

    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        self.disk.fsync(self._ino(path, fh))
        return 0

    def unlink(self, path: str) -> int:
        self.disk.unlink(path)
        return 0

    def rename(self, old: str, new: str) -> int:
        self.disk.rename(old, new)
        return 0

    def utimens(self, path: str | None, mtime_ns: int | None = None, fh: int | None = None) -> int:
        self.disk.touch(self._ino(path, fh), mtime_ns)
        return 0

    def chmod(self, path: str | None, mode: int, fh: int | None = None) -> int:
        self.disk.chmod(self._ino(path, fh), mode)
        return 0

    def chown(self, path: str | None, uid: int, gid: int) -> int:
        return 0

    def statfs(self, path: str) -> dict[str, int]:
        blocks = 1 << 22  # 16 GiB of 4 KiB blocks: never the reason a test fails
        return {"f_bsize": 4096, "f_frsize": 4096, "f_blocks": blocks, "f_bfree": blocks, "f_bavail": blocks,
                "f_files": 1 << 20, "f_ffree": 1 << 20, "f_namemax": 255}


class _FUSE(mfusepy.FUSE):
    """mfusepy 3.1 drops libfuse 3's file handle for truncate, chmod and utimens; with ``nopath`` an
    ftruncate(2) would then name no file at all. Pass the handle on."""

    def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
        return self.operations.truncate(None if path is None else path.decode(), length, fip.contents.fh if fip else None)

    def utimens_fuse_3(self, path: bytes | None, buf: Any, fip: Any) -> int:
        mtime = None  # now, also for UTIME_NOW
        if buf and buf.contents.modtime.tv_nsec == UTIME_OMIT:
            return 0
        if buf and buf.contents.modtime.tv_nsec != UTIME_NOW:
            mtime = mfusepy.time_of_timespec(buf.contents.modtime, use_ns=True)
        return self.operations.utimens(None if path is None else path.decode(), mtime, fip.contents.fh if fip else None)

    def chmod_fuse_3(self, path: bytes | None, mode: int, fip: Any) -> int:
        return self.operations.chmod(None if path is None else path.decode(), mode, fip.contents.fh if fip else None)


@dataclass
class Control:
    """The commands' side: tells the mount loop whether an unmount means 'cut' or 'quit'."""

    mountpoint: str
    disk: Disk
    quit: bool = False
    report: CutReport | None = None
    _out: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def say(self, what: str, data: dict[str, Any]) -> None:
        with self._out:
            sys.stdout.write(f"powercut {what} {json.dumps(data)}\n")
            sys.stdout.flush()

    def announce(self) -> None:
        self.say("mounted", dataclasses.asdict(self.report) if self.report else {})

    def unmount(self) -> None:
        if subprocess.run(["fusermount3", "-u", self.mountpoint], capture_output=True).returncode != 0:
            subprocess.run(["fusermount3", "-u", "-z", self.mountpoint], capture_output=True)

    def serve_commands(self) -> None:
        for line in sys.stdin:
            command = line.strip()
            if command == "freeze":
                self.disk.freeze()
                self.say("frozen", {})
            elif command == "cut":
                self.disk.freeze()
                self.unmount()
            elif command == "stats":
                self.say("stats", dict(self.disk.counts))
            elif command == "quit":
                break
        self.quit = True
        self.unmount()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    mountpoint = sys.argv[1]
    control = Control(mountpoint, Disk())
    threading.Thread(target=control.serve_commands, name="powercut-control", daemon=True).start()
    while True:
        # Blocks until unmounted. hard_remove: unlink really unlinks (no .fuse_hidden files).
        _FUSE(PowerCutFS(control.disk, control.announce), mountpoint, foreground=True, nothreads=True,
                     hard_remove=True, fsname="powercut")
        if control.quit:
            break
        control.report = control.disk.power_cut()


if __name__ == "__main__":
    main()
