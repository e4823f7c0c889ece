"""No token: the same dataset layout (format 3) in a local directory, loadable with ``load_dataset(PATH, config)``.

Several uploaders may share one local dataset: a file lock serialises the "is the batch there
already? move its shards in, update info.json, rewrite the card" step, as the parent-commit check
does on the Hub. The step is journaled so that a batch counts in info.json exactly when all of its
shards are in place: (1) ``meta/.pending.json`` = the merged info and the shard list, durably;
(2) the shards are renamed in; (3) info.json := the merged info; (4) the journal is removed. The next
writer first finishes a journal whose shards are all there, and drops one whose shards are not. Episodes
written here move to the spool's ``uploaded-local/`` area; a later run with a token pushes them to
the Hub from there (see ``uploader.claims``).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from filelock import FileLock

from gymrec.shared.dataset import layout
from gymrec.shared.errors import AlreadyPublishedError, DatasetError, DiskFullError
from gymrec.shared.spool.fsio import durable_mkdir, fsync_dir, fsync_file
from gymrec.uploader import card, compact, info, ownership, published, reformat, withdraw
from gymrec.uploader.convert import ConvertOptions
from gymrec.uploader.hub import Receipt
from gymrec.uploader.manifests import durable_write
from gymrec.uploader.shards import Batch

log = logging.getLogger(__name__)
T = TypeVar("T")
LOCK_NAME = ".gymrec.lock"
STAGING_DIR = ".staging"


def check_local_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise DatasetError(f"the local dataset {path} is a file", "pass --local-dir DIR with a directory")
    try:
        durable_mkdir(path)
    except OSError as e:
        raise DatasetError(f"cannot create the local dataset {path}: {e.strerror}", "pass --local-dir DIR somewhere writable") from e
    return path


def staging_dir(local_dir: Path, name: str) -> Path:
    """Where an episode is converted before it is moved in: the same filesystem, so moves are renames."""
    path = local_dir / STAGING_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _files(local_dir: Path) -> list[str]:
    return [str(p.relative_to(local_dir)) for p in local_dir.rglob("*") if p.is_file()]


def _refuse_v1(local_dir: Path) -> None:
    """A format-1 gymrec dataset (one meta/episodes/<id>.json per episode) is refused as such."""
    folder = local_dir / layout.INDEX_DIR
    v1 = folder.is_dir() and any(layout.is_v1_meta_path(f"{layout.INDEX_DIR}/{p.name}") for p in folder.iterdir())
    info.check(None, str(local_dir), v1)


def read_info(local_dir: Path, force_adopt: bool = False, writing: bool = True) -> dict[str, Any] | None:
    """The dataset's info.json; None for a new (empty) dataset. One that lost its info.json is rebuilt
    from its shards (and written: the directory is ours), someone else's files are refused
    (``uploader.ownership``) or, with ``force_adopt``, adopted (nothing written until a batch)."""
    path = local_dir / layout.INFO_PATH
    try:
        found: dict[str, Any] | None = layout.parse_info(path.read_bytes(), str(path))
    except (FileNotFoundError, DatasetError):  # missing or damaged: what else is there decides
        found = None
    if found is not None and "format_version" in found:
        info.check(found, str(local_dir), writing=writing)  # another gymrec format: refused, not adopted
    if found is not None and ownership.is_gymrec_info(found):
        return found
    _refuse_v1(local_dir)
    files = _files(local_dir)
    state = ownership.state_without_info(files)
    if state == ownership.EMPTY:
        return None
    if state == ownership.LOST_INFO:
        rebuilt = ownership.rebuild(files, lambda rel: (local_dir / rel).read_bytes(), lambda rel: pq.read_schema(local_dir / rel))
        durable_write(path, info.dumps(rebuilt))
        return rebuilt
    if not force_adopt:
        raise ownership.refuse_foreign(str(local_dir), "--local-dir")
    return ownership.adopted(files)


PENDING_PATH = f"{layout.META_DIR}/.pending.json"


def _finish_pending(local_dir: Path) -> None:
    """Complete or drop an interrupted step (call with the lock held)."""
    path = local_dir / PENDING_PATH
    try:
        pending = json.loads(path.read_bytes())
    except FileNotFoundError:
        return
    except ValueError:
        pending = None  # torn before its fsync: step (2) never started
    if pending is not None and all((local_dir / rel).is_file() for rel in pending["shards"]):
        durable_write(local_dir / layout.INFO_PATH, info.dumps(pending["info"]))
        _delete(local_dir, pending.get("delete", []))  # compaction: the shards it merged
        log.info("finished an interrupted write to %s", local_dir)
    elif pending is not None:  # a batch or compaction that did not finish: drop what of it moved in
        # (an index shard left behind would list episodes info.json does not count, and exactly-once
        # would then take them as published)
        _delete(local_dir, pending["shards"])
    path.unlink()
    fsync_dir(path.parent)


def _delete(local_dir: Path, paths: list[str]) -> None:
    """Remove ``paths`` (those already gone are skipped: a killed run may have removed them, or never
    made their folder)."""
    for rel in paths:
        target = local_dir / rel
        try:
            target.unlink()
        except FileNotFoundError:
            continue
        fsync_dir(target.parent)


def _remove_stray_temps(local_dir: Path) -> None:
    """The ``.NAME.tmp`` files (``shared.spool.fsio.atomic_write``) of writes a killed uploader never renamed in."""
    for path in local_dir.rglob(".*.tmp"):
        if STAGING_DIR not in path.relative_to(local_dir).parts and path.is_file():
            path.unlink()
            log.info("removed %s, left by an interrupted write", path)


def write_card(local_dir: Path, current: dict[str, Any]) -> None:
    if not ownership.writes_card(current):
        return  # an adopted dataset's README.md is its owner's
    # The card travels with the directory: it names it as a reader beside it would, never by its path here.
    text = card.render(current, card.Target(local_dir.resolve().name, local=True))
    path = local_dir / layout.CARD_PATH
    if not path.is_file() or path.read_text(errors="replace") != text:
        try:
            durable_write(path, text.encode())
        except (IsADirectoryError, NotADirectoryError) as e:  # something else holds the card's path
            raise DatasetError(f"cannot write the dataset card {path}: {e.strerror}",
                               "move what is at that path away and run again; nothing was lost") from e


class LocalWriter:
    """Adds batches to one local dataset directory."""

    def __init__(self, local_dir: Path, force_adopt: bool = False) -> None:
        self.local_dir = check_local_dir(local_dir)
        self.force_adopt = force_adopt
        self.skipped: list[str] = []  # the last compaction's unreadable shards, "path (why)"
        if not (local_dir / layout.INFO_PATH).is_file():  # before the lock file is made in it
            _refuse_v1(local_dir)
            if ownership.state_without_info(_files(local_dir)) == ownership.FOREIGN:
                if not force_adopt:
                    raise ownership.refuse_foreign(str(local_dir), "--local-dir")
                log.warning("adopting %s (--force-adopt): its files stay as they are", local_dir)
        self._lock = FileLock(str(self.local_dir / LOCK_NAME))
        self._index = published.IndexCache()

    def listed(self) -> dict[str, list[published.Listed]]:
        """Every episode id the dataset's index lists (shards read before are not read again)."""
        folder = self.local_dir / layout.INDEX_DIR
        paths = [str(p.relative_to(self.local_dir)) for p in folder.rglob("*" + layout.SHARD_SUFFIX)] if folder.is_dir() else []
        return self._index.listed(paths, lambda rel: (self.local_dir / rel).read_bytes())

    def _check_published(self, batch: Batch) -> None:
        """Refuse (nothing written) a batch holding an episode id the index already lists."""
        verdict = published.judge(batch.fingerprints, self.listed(), str(self.local_dir))
        if verdict.found:
            raise AlreadyPublishedError(verdict.same, verdict.clash)

    def batch_landed(self, paths: list[str]) -> bool:
        with self._lock:
            _finish_pending(self.local_dir)
            current = read_info(self.local_dir, self.force_adopt)
            return current is not None and all((self.local_dir / p).is_file() for p in paths)

    def repair_card(self) -> None:
        """A rerun always leaves a card that matches info.json (a missing or stale one is rewritten)
        and no temporary file a killed run left (every write here happens under the lock we hold)."""
        with self._lock:
            _finish_pending(self.local_dir)
            _remove_stray_temps(self.local_dir)
            current = read_info(self.local_dir, self.force_adopt)
            if current is not None:
                write_card(self.local_dir, current)

    def add(self, batch: Batch) -> Receipt:
        root = self.local_dir
        with self._lock:
            _finish_pending(root)
            current = read_info(root, self.force_adopt)
            self._check_published(batch)  # also an earlier attempt of this very batch
            merged = info.merge(current, batch)
            durable_mkdir(root / layout.META_DIR)
            durable_write(root / PENDING_PATH, json.dumps({"info": merged, "shards": batch.shard_paths}).encode())
            for rel, local in sorted(batch.files.items()):
                target = root / rel
                durable_mkdir(target.parent)
                fsync_file(local)  # the data before the name that publishes it: else a cut leaves 0 bytes
                os.replace(local, target)
                fsync_dir(target.parent)
            for config in info.new_configs(current, batch):
                target = root / layout.preview_path(config)
                durable_mkdir(target.parent)
                durable_write(target, batch.parts[config].preview_png)
            durable_write(root / layout.INFO_PATH, info.dumps(merged))  # this is what makes the batch count
            (root / PENDING_PATH).unlink()
            write_card(root, merged)
        log.info("wrote batch %s (%d episodes) to %s", batch.batch_id[:8], len(batch.episode_ids), root)
        return Receipt("local", None, batch.shard_paths, batch.batch_id, local_dir=str(root))

    def compact_shards(self, target_bytes: int, options: ConvertOptions) -> tuple[int, int]:
        """Merge small shards (the same plan and checks as on the Hub); (shards replaced, shards written)."""
        return self._staged("compact", lambda root: self._compact(root, target_bytes, options))

    def to_format3(self, options: ConvertOptions) -> tuple[int, int, int]:
        """Convert every format-2 shard (``uploader.reformat``); (shards, episodes, frames checked)."""
        return self._staged("reformat", lambda root: self._reformat(root, options))

    def _staged(self, what: str, work: Callable[[Path], T]) -> T:
        base = self.local_dir
        try:
            root = staging_dir(base, f"{what}.{os.getpid()}")  # the same filesystem: the moves are renames
            try:
                return work(root)
            finally:
                shutil.rmtree(root, ignore_errors=True)
        except OSError as e:
            if e.errno == errno.ENOSPC:  # the dataset's disk, not the spool's: say which
                raise DiskFullError(f"the disk holding the dataset {base} is full ({what})",
                                    "free some space there and run again; the dataset is as it was") from e
            raise

    def _current(self) -> dict[str, Any]:
        current = read_info(self.local_dir, writing=False)  # a format-2 dataset compacts as format 2
        if current is None:
            raise DatasetError(f"{self.local_dir} holds no gymrec dataset (no {layout.INFO_PATH})", "check --local-dir")
        return current

    def _shards(self) -> list[compact.Shard]:
        base = self.local_dir
        sizes = {str(p.relative_to(base)): p.stat().st_size
                 for folder in (layout.DATA_DIR, layout.INDEX_DIR, layout.FRAMES_DIR) if (base / folder).is_dir()
                 for p in (base / folder).rglob("*" + layout.SHARD_SUFFIX)}  # fmt: skip
        return compact.shards_of(sizes)

    def _compact(self, root: Path, target_bytes: int, options: ConvertOptions) -> tuple[int, int]:
        base = self.local_dir
        with self._lock:
            _finish_pending(base)
            current = self._current()
            planned = compact.plan(self._shards(), target_bytes, compact.duplicated_shards(self.listed()))
            local = {path: base / path for group in planned for s in group for path in s.files}
            checked = [compact.usable(group, local) for group in planned]
            self.skipped = [why for _, bad in checked for why in bad]
            groups = [group for group, _ in checked if len(group) > 1]
            if not groups:
                return 0, 0
            merged = [compact.merge(group, local, root, options) for group in groups]
            self._replace(current, merged)
        return sum(len(m.replaces) for m in merged), len(merged)

    def _reformat(self, root: Path, options: ConvertOptions) -> tuple[int, int, int]:
        base = self.local_dir
        with self._lock:
            _finish_pending(base)
            current = self._current()
            todo = reformat.pending(self._shards())
            if not todo and layout.format_of(current) == layout.FORMAT_VERSION:
                return 0, 0, 0
            done = [reformat.reformat(s, {path: base / path for path in s.files}, root, options) for s in todo]
            self._replace(current, [d.merged for d in done], reformat.converted_info(current))
        return len(done), sum(d.episodes for d in done), sum(d.frames for d in done)

    def _replace(self, current: dict[str, Any], merged: list[compact.Merged], new_info: dict[str, Any] | None = None) -> list[str]:
        """Swap ``merged``'s shards in for those they replace, journaled as a batch is (call with the
        lock held), with ``new_info`` (default: ``current`` less what they left out); returns the paths deleted."""
        base = self.local_dir
        new_info = compact.updated_info(current, merged) if new_info is None else new_info
        new_paths = sorted(p for m in merged for p in m.files)
        deleted = sorted(p for m in merged for p in m.deleted)
        previews = [p for p in withdraw.emptied_previews(current, new_info) if (base / p).is_file()]
        redrawn = withdraw.redrawn_previews(merged)  # from the new shards, before they move in
        durable_write(base / PENDING_PATH, json.dumps({"info": new_info, "shards": new_paths, "delete": deleted + previews}).encode())
        for m in merged:
            for rel, file in sorted(m.files.items()):
                durable_mkdir((base / rel).parent)
                fsync_file(file)
                os.replace(file, base / rel)
                fsync_dir((base / rel).parent)
        for rel, png in sorted(redrawn.items()):
            durable_mkdir((base / rel).parent)
            durable_write(base / rel, png)
        durable_write(base / layout.INFO_PATH, info.dumps(new_info))
        _delete(base, deleted + previews)
        (base / PENDING_PATH).unlink()
        write_card(base, new_info)
        return deleted

    def withdraw(self, participant: str, options: ConvertOptions) -> int:
        """Remove ``participant``'s episodes (``uploader.withdraw``); how many were removed."""
        base = self.local_dir
        root = staging_dir(base, f"withdraw.{os.getpid()}")
        try:
            with self._lock:
                _finish_pending(base)
                current = read_info(base, self.force_adopt, writing=False)  # a format-2 dataset is withdrawn from too
                folder = base / layout.INDEX_DIR
                if current is None or not folder.is_dir():
                    return 0
                paths = [str(p.relative_to(base)) for p in folder.rglob("*" + layout.SHARD_SUFFIX)]
                found = withdraw.affected(paths, lambda rel: (base / rel).read_bytes(), participant)
                groups = [g for commit in withdraw.commits(found) for g in commit]  # no file limit here: one step
                local = {path: base / path for group in groups for s in group for path in s.files}
                merged = [compact.merge(g, local, root, options, withdraw.leave_out(g, found)) for g in groups]
                if merged:
                    self._replace(current, merged)
            return withdraw.removed(merged)
        finally:
            shutil.rmtree(root, ignore_errors=True)
