"""An in-memory disk with a volatile cache: what a power cut keeps, and what it throws away.

Every operation is visible at once (like the page cache), but only what was made durable survives
``power_cut()``. The rules are the POSIX minimum, stricter than ext4:

- a file's data and size are durable as of its last ``fsync``/``fdatasync`` (an ``msync`` of a
  shared map reaches FUSE as the dirty pages' writes plus an fsync); never synced: empty;
- a directory's entries (create, mkdir, rename in or out, unlink, rmdir) are durable as of its
  last fsync; fsyncing a file makes neither its name nor its parent's entries durable;
- a directory never synced comes back empty, and whatever is reachable only through names that
  were never made durable is gone;
- a rename is atomic as a whole (journaling filesystems guarantee that much): once the target
  directory's fsync makes the new name durable, the old name is gone too. Fsyncing only the
  source directory drops the old name and does not keep the new one: the entry is lost.

The model is pure Python so ``tests/test_powercut_fs.py`` can check it without FUSE; the
filesystem in ``tests/powercut/daemon.py`` serves it, and every error here is an ``OSError`` with
the errno FUSE hands to the caller.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from collections import Counter
from dataclasses import dataclass, field

ROOT = 1


def _fail(code: int) -> OSError:
    return OSError(code, os.strerror(code))


@dataclass
class Inode:
    ino: int
    is_dir: bool
    mode: int
    data: bytearray = field(default_factory=bytearray)  # files
    entries: dict[str, int] = field(default_factory=dict)  # directories: name -> ino
    mtime_ns: int = field(default_factory=time.time_ns)
    linked: bool = True  # False once unlinked (an open descriptor may still use it)


@dataclass(frozen=True)
class CutReport:
    """What one power cut threw away (for the harness's own diagnostics)."""

    files_kept: int
    dirs_kept: int
    unsynced_bytes_dropped: int  # live bytes of surviving files beyond their synced state
    entries_dropped: int  # names reachable before the cut and gone after it (or naming other inodes)


class Disk:
    def __init__(self) -> None:
        self.inodes: dict[int, Inode] = {ROOT: Inode(ROOT, True, stat.S_IFDIR | 0o755)}
        self.synced_data: dict[int, bytes] = {}
        self.synced_entries: dict[int, dict[str, int]] = {ROOT: {}}
        # Where each inode's one durable name is: (directory ino, name). Keeps renames atomic.
        self.synced_name: dict[int, tuple[int, str]] = {}
        self.frozen = False
        self.counts: Counter[str] = Counter()
        self._next_ino = ROOT + 1

    # --- lookups ----------------------------------------------------------------------------------

    def _check(self) -> None:
        if self.frozen:  # the power is gone: nothing reads, nothing writes
            raise _fail(errno.EIO)

    def node(self, ino: int) -> Inode:
        self._check()
        try:
            return self.inodes[ino]
        except KeyError:
            raise _fail(errno.EBADF) from None

    def lookup(self, path: str) -> int:
        self._check()
        ino = ROOT
        for part in (p for p in path.split("/") if p):
            parent = self.inodes[ino]
            if not parent.is_dir:
                raise _fail(errno.ENOTDIR)
            if part not in parent.entries:
                raise _fail(errno.ENOENT)
            ino = parent.entries[part]
        return ino

    def _parent(self, path: str) -> tuple[Inode, str]:
        head, _, name = path.rstrip("/").rpartition("/")
        parent = self.node(self.lookup(head or "/"))
        if not parent.is_dir:
            raise _fail(errno.ENOTDIR)
        return parent, name

    def stat(self, ino: int) -> dict[str, int]:
        node = self.node(ino)
        size = 4096 if node.is_dir else len(node.data)
        return {"st_mode": node.mode, "st_ino": ino, "st_nlink": 2 if node.is_dir else int(node.linked),
                "st_size": size, "st_blocks": -(-size // 512), "st_uid": 0, "st_gid": 0,
                "st_mtime": node.mtime_ns, "st_ctime": node.mtime_ns, "st_atime": node.mtime_ns}

    def listdir(self, ino: int) -> list[str]:
        node = self.node(ino)
        if not node.is_dir:
            raise _fail(errno.ENOTDIR)
        return list(node.entries)

    # --- namespace ---------------------------------------------------------------------------------

    def _new(self, path: str, is_dir: bool, mode: int) -> int:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise _fail(errno.EEXIST)
        ino, self._next_ino = self._next_ino, self._next_ino + 1
        kind = stat.S_IFDIR if is_dir else stat.S_IFREG
        self.inodes[ino] = Inode(ino, is_dir, kind | (mode & 0o7777))
        parent.entries[name] = ino
        parent.mtime_ns = time.time_ns()
        return ino

    def mkdir(self, path: str, mode: int) -> int:
        return self._new(path, True, mode)

    def create(self, path: str, mode: int) -> int:
        return self._new(path, False, mode)

    def unlink(self, path: str) -> None:
        parent, name = self._parent(path)
        ino = self.lookup(path)
        if self.inodes[ino].is_dir:
            raise _fail(errno.EISDIR)
        del parent.entries[name]
        self.inodes[ino].linked = False

    def rmdir(self, path: str) -> None:
        parent, name = self._parent(path)
        node = self.inodes[self.lookup(path)]
        if not node.is_dir:
            raise _fail(errno.ENOTDIR)
        if node.entries:
            raise _fail(errno.ENOTEMPTY)
        del parent.entries[name]
        node.linked = False

    def rename(self, old: str, new: str) -> None:
        """rename(2): replaces a file, or an empty directory, at ``new``."""
        src_parent, src_name = self._parent(old)
        ino = self.lookup(old)
        dst_parent, dst_name = self._parent(new)
        moving = self.inodes[ino]
        if moving.is_dir and (new.rstrip("/") + "/").startswith(old.rstrip("/") + "/") and new != old:
            raise _fail(errno.EINVAL)  # into its own subtree
        target = dst_parent.entries.get(dst_name)
        if target == ino:
            return
        if target is not None:
            replaced = self.inodes[target]
            if moving.is_dir and not replaced.is_dir:
                raise _fail(errno.ENOTDIR)
            if replaced.is_dir and not moving.is_dir:
                raise _fail(errno.EISDIR)
            if replaced.is_dir and replaced.entries:
                raise _fail(errno.ENOTEMPTY)
            replaced.linked = False
        del src_parent.entries[src_name]
        dst_parent.entries[dst_name] = ino
        src_parent.mtime_ns = dst_parent.mtime_ns = time.time_ns()

    # --- data --------------------------------------------------------------------------------------

    def read(self, ino: int, size: int, offset: int) -> bytes:
        return bytes(self.node(ino).data[offset : offset + size])

    def write(self, ino: int, data: bytes, offset: int) -> int:
        node = self.node(ino)
        if offset > len(node.data):
            node.data.extend(bytes(offset - len(node.data)))
        node.data[offset : offset + len(data)] = data
        node.mtime_ns = time.time_ns()
        return len(data)

    def truncate(self, ino: int, length: int) -> None:
        node = self.node(ino)
        if length < len(node.data):
            del node.data[length:]
        else:
            node.data.extend(bytes(length - len(node.data)))
        node.mtime_ns = time.time_ns()

    def allocate(self, ino: int, offset: int, length: int) -> None:
        """posix_fallocate: the size grows to cover the range; the bytes read as zeros."""
        if offset + length > len(self.node(ino).data):
            self.truncate(ino, offset + length)

    def touch(self, ino: int, mtime_ns: int | None) -> None:
        self.node(ino).mtime_ns = time.time_ns() if mtime_ns is None else mtime_ns

    def chmod(self, ino: int, mode: int) -> None:
        node = self.node(ino)
        node.mode = (node.mode & ~0o7777) | (mode & 0o7777)

    # --- durability --------------------------------------------------------------------------------

    def fsync(self, ino: int) -> None:
        node = self.node(ino)
        if node.is_dir:
            self._sync_dir(node)
            return
        self.counts["fsync"] += 1
        self.synced_data[ino] = bytes(node.data)

    def _sync_dir(self, node: Inode) -> None:
        self.counts["fsyncdir"] += 1
        before = self.synced_entries.get(node.ino, {})
        now = dict(node.entries)
        for name, ino in before.items():
            if now.get(name) != ino and self.synced_name.get(ino) == (node.ino, name):
                del self.synced_name[ino]
        for name, ino in now.items():
            where = self.synced_name.get(ino)
            if where is not None and where != (node.ino, name):
                # A rename made durable at its target: its old name goes with it, atomically.
                old_dir = self.synced_entries.get(where[0], {})
                if old_dir.get(where[1]) == ino:
                    del old_dir[where[1]]
            self.synced_name[ino] = (node.ino, name)
        self.synced_entries[node.ino] = now

    def freeze(self) -> None:
        """The moment of the cut: from now on every operation fails with EIO."""
        self.frozen = True

    def power_cut(self) -> CutReport:
        """Throw away everything not durable; the disk then serves only what survived."""
        live = self.inodes
        live_names = self._names(live)
        kept: dict[int, Inode] = {}
        dropped_bytes = 0
        stack = [ROOT]
        while stack:
            ino = stack.pop()
            if ino in kept:  # cannot happen (one durable name per inode); never loop forever
                continue
            was = live[ino]
            node = Inode(ino, was.is_dir, was.mode, mtime_ns=was.mtime_ns)
            if was.is_dir:
                node.entries = dict(self.synced_entries.get(ino, {}))
                stack.extend(node.entries.values())
            else:
                node.data = bytearray(self.synced_data.get(ino, b""))
                dropped_bytes += max(0, len(was.data) - len(node.data)) if was.linked else 0
            kept[ino] = node
        self.inodes = kept
        # What survived is, by definition, durable.
        self.synced_data = {i: bytes(n.data) for i, n in kept.items() if not n.is_dir}
        self.synced_entries = {i: dict(n.entries) for i, n in kept.items() if n.is_dir}
        self.synced_name = {c: (i, name) for i, n in kept.items() if n.is_dir for name, c in n.entries.items()}
        self.frozen = False
        self.counts["cuts"] += 1
        files = sum(not n.is_dir for n in kept.values())
        return CutReport(files, len(kept) - files, dropped_bytes, len(live_names - self._names(kept)))

    @staticmethod
    def _names(inodes: dict[int, Inode]) -> set[tuple[int, str, int]]:
        """(directory, name, inode) of every name reachable from the root."""
        names: set[tuple[int, str, int]] = set()
        stack = [ROOT]
        while stack:
            node = inodes[stack.pop()]
            for name, child in node.entries.items():
                if (node.ino, name, child) not in names:
                    names.add((node.ino, name, child))
                    if inodes[child].is_dir:
                        stack.append(child)
        return names
