"""Turn the CLI's EPISODE / --spool / --repo-id / --local-dir / --all into episodes to replay.

Episodes are opened lazily, one at a time, so ``--all`` over a large dataset downloads and holds
only the episode being verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from gymrec.replay.dataset import (
    DatasetIndex,
    DatasetSource,
    Files,
    HubFiles,
    LocalFiles,
    is_dataset_dir,
    resolve_ids,
)
from gymrec.replay.sources import EpisodeSource, SpoolSource, spool_all, spool_episode
from gymrec.shared import schema
from gymrec.shared.errors import AmbiguousEpisodeError, DatasetError, EpisodeNotFoundError
from gymrec.shared.spool import check_spool


@dataclass(frozen=True)
class Selection:
    key: str | None
    all_: bool
    spool: Path
    repo_id: str | None = None
    local_dir: Path | None = None
    endpoint: str | None = None
    token: str | None = None


@dataclass(frozen=True)
class Job:
    """One episode to replay. ``explicit``: named by the user, so replayed even if discarded."""

    label: str
    open: Callable[[], EpisodeSource]
    explicit: bool


def _dataset_jobs(files: Files, key: str | None, all_: bool) -> list[Job]:
    index = DatasetIndex(files)
    ids = resolve_ids(index, key, all_)
    if not all_ and key is None and len(ids) != 1:
        raise AmbiguousEpisodeError(
            f"{files.where} holds {len(ids)} episodes", "pass --all, or an episode id or index with --local-dir"
        )
    return [Job(i, partial(DatasetSource, index, i), explicit=not all_) for i in ids]


def spool_to_recover(sel: Selection) -> Path | None:
    """The spool the episodes come from, where orphaned episodes are recovered first; None otherwise."""
    if sel.repo_id or sel.local_dir:
        return None
    if sel.key is not None and Path(sel.key).is_dir():
        key = Path(sel.key)
        if is_dataset_dir(key) or (key / schema.METADATA_NAME).exists() or not sel.all_:
            return None
        return key
    return sel.spool if sel.spool.is_dir() else None


def jobs(sel: Selection) -> list[Job]:
    if sel.key is None and not sel.all_:
        raise EpisodeNotFoundError("no episode given", "pass an episode id, prefix or path, or --all")
    if sel.repo_id:
        return _dataset_jobs(HubFiles(sel.repo_id, sel.endpoint, sel.token, sel.local_dir), sel.key, sel.all_)
    if sel.local_dir:
        if not is_dataset_dir(sel.local_dir):
            raise DatasetError(f"{sel.local_dir} is not a gymrec dataset directory", "pass the folder holding meta/ and data/")
        return _dataset_jobs(LocalFiles(sel.local_dir), sel.key, sel.all_)
    if sel.key is not None and is_dataset_dir(Path(sel.key)):
        return _dataset_jobs(LocalFiles(Path(sel.key)), None, sel.all_)
    if sel.key is not None and not sel.all_:
        path = Path(sel.key)
        if not (path.is_dir() and (path / schema.METADATA_NAME).exists()):
            check_spool(sel.spool, create=False)
        found = spool_episode(sel.spool, sel.key)
        return [Job(found.name, partial(SpoolSource, found), explicit=True)]
    if sel.key is not None and Path(sel.key).is_dir():
        root = Path(sel.key)  # --all with a spool directory as EPISODE
    else:
        root = check_spool(sel.spool, create=False)
    return [Job(p.name, partial(SpoolSource, p), explicit=False) for p in spool_all(root)]
