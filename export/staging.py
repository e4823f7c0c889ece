"""Outputs appear under their final name only when complete.

Everything is written under a hidden temporary name next to the target (same filesystem, so the
final rename is atomic), fsynced, then renamed. Whatever goes wrong (a full disk, a bad episode,
Ctrl-C) the temporary is removed and the target name is untouched, or, with ``--force``, still
holds the previous output.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gymrec.shared.errors import ExportDiskFullError, ExportTargetExistsError
from gymrec.shared.fsio import fsync_dir, fsync_file

NO_SPACE = "No space left on device"  # pyarrow and ffmpeg report ENOSPC in the text, not always in errno


def check_target(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise ExportTargetExistsError(f"{target} already exists", "pass --force to replace it, or choose another name")


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
def staged(target: Path, force: bool) -> Iterator[Path]:
    """Yield a temporary path to write ``target`` into; publish it if the block completes."""
    check_target(target, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield tmp
        _fsync_tree(tmp)
        _publish(tmp, target, force)
        fsync_dir(target.parent)
    except OSError as e:
        if is_disk_full(e):
            raise ExportDiskFullError(f"the disk holding {target.parent} is full",
                                      "free some space and run again; nothing was written under the target name") from e
        raise
    finally:
        _remove(tmp)
