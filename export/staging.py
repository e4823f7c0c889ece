"""Outputs appear under their final name only when complete.

Everything is written under a hidden temporary name next to the target (same filesystem, so the
final rename is atomic), fsynced, then renamed. Whatever goes wrong (a full disk, a bad episode,
Ctrl-C, SIGTERM) the temporary is removed and the target name is untouched, or, with ``--force``,
still holds the previous output. A temporary left by SIGKILL or a power cut names the process that
wrote it; the next export of that target removes it once that process is gone.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gymrec.shared.errors import ExportDiskFullError, ExportError, ExportTargetExistsError
from gymrec.shared.spool.fsio import fsync_dir, fsync_file

NO_SPACE = "No space left on device"  # pyarrow and ffmpeg report ENOSPC in the text, not always in errno


def check_target(target: Path, force: bool, file: bool = False) -> None:
    """``file``: the output is one file, so a directory under its name is never replaced."""
    if file and target.is_dir():
        raise ExportError(f"{target} is a directory", "name a file such as out.mp4, or use --all DIR for one video per episode")
    if target.exists() and not force:
        raise ExportTargetExistsError(f"{target} already exists", "pass --force to replace it, or choose another name")


def _cannot_write(where: Path, e: OSError) -> ExportError:
    return ExportError(f"cannot write to {where} ({e.strerror or e})", "choose a writable place for the output")


def prepare_folder(folder: Path, create: bool = False, parents: bool = False) -> None:
    """Check the folder an output goes into exists and is writable, before any work is done. ``create``:
    make it if missing (``--all DIR``), and with ``parents`` the folders above it too (Minari's data
    path). A typo in a path must not silently create a tree of folders."""
    try:
        if not folder.is_dir():
            missing = folder if not create else folder.parent
            if not parents and not missing.is_dir():
                raise ExportError(f"{missing} does not exist", "create it first, or check the path")
            folder.mkdir(parents=parents, exist_ok=True)
    except OSError as e:
        raise _cannot_write(folder, e) from e
    if not os.access(folder, os.W_OK | os.X_OK):  # a read-only mount answers EROFS here, even to root
        raise ExportError(f"cannot write to {folder} (read-only or not writable)", "choose a writable place for the output")


def _tmp_prefix(target: Path) -> str:
    return f".{target.name}.tmp-"


def remove_stale(target: Path) -> None:
    """Remove temporaries of ``target`` whose writer process is gone (killed before it could clean up)."""
    prefix = _tmp_prefix(target)
    try:
        names = [p for p in target.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for path in names:
        pid = path.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            _remove(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_disk_full(e: BaseException) -> bool:
    return isinstance(e, OSError) and (e.errno == errno.ENOSPC or NO_SPACE in str(e))


def _fsync_tree(path: Path) -> None:
    if path.is_file():
        fsync_file(path)
        return
    for folder, _, files in os.walk(path):
        for name in files:
            fsync_file(Path(folder) / name)
        fsync_dir(Path(folder))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _publish(tmp: Path, target: Path, force: bool) -> None:
    check_target(target, force)  # again: something may have appeared while we wrote
    if tmp.is_file() or not target.exists():
        os.replace(tmp, target)  # a file replaces a file atomically
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.rename(target, old)  # a directory cannot replace a non-empty one: move the old one aside first
    try:
        os.rename(tmp, target)
    except OSError:
        os.rename(old, target)
        raise
    _remove(old)


@contextmanager
def staged(target: Path, force: bool, parents: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write ``target`` into; publish it if the block completes.
    ``parents``: create missing folders above the target (Minari's data path), not only the last one."""
    check_target(target, force)
    prepare_folder(target.parent, create=parents, parents=parents)
    remove_stale(target)
    tmp = target.parent / f"{_tmp_prefix(target)}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        _fsync_tree(tmp)
        _publish(tmp, target, force)
        fsync_dir(target.parent)
    except OSError as e:
        if is_disk_full(e):
            raise ExportDiskFullError(f"the disk holding {target.parent} is full",
                                      "free some space and run again; nothing was written under the target name") from e
        if e.errno == errno.EROFS:  # only a write can meet a read-only filesystem
            raise _cannot_write(target.parent, e) from e
        raise
    finally:
        _remove(tmp)
