"""Turn the CLI's EPISODE / --spool / --repo-id / --local-dir / --all into episodes to replay.

Episodes are opened lazily, one at a time, so ``--all`` over a large dataset downloads and holds
only the episode being verified.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from gymrec.shared.errors import AmbiguousEpisodeError, DatasetError, EpisodeNotFoundError
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import check_spool
from gymrec.shared.spool.sources import (
    EpisodeSource,
    SpoolSource,
    open_unless_discarded,
    spool_all,
    spool_episode,
)

if TYPE_CHECKING:
    from gymrec.shared.dataset.reader import Files

# shared.dataset.reader imports datasets, pyarrow and pandas (~1 s of start-up): only for datasets, so
# that replaying the spool starts as fast as the recorder.


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
    """One episode to replay. ``explicit``: named by the user, so replayed even if discarded.
    ``open`` gives None for an episode it found discarded (not replayed)."""

    label: str
    open: Callable[[], EpisodeSource | None]
    explicit: bool


def _is_dataset_dir(path: Path) -> bool:
    if not path.is_dir() or (path / schema.METADATA_NAME).exists():  # a spool or an episode
        return False
    from gymrec.shared.dataset.reader import is_dataset_dir

    return is_dataset_dir(path)


def _dataset_jobs(files: Files, key: str | None, all_: bool) -> list[Job]:
    from gymrec.shared.dataset.index import DatasetIndex, resolve_ids
    from gymrec.shared.dataset.reader import DatasetSource

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
        if (key / schema.METADATA_NAME).exists() or not sel.all_ or _is_dataset_dir(key):
            return None
        return key
    try:
        return sel.spool if sel.spool.is_dir() else None
    except OSError:  # e.g. a name too long: jobs() checks the spool and says so in one line
        return None


def jobs(sel: Selection) -> list[Job]:
    if sel.key is None and not sel.all_:
        raise EpisodeNotFoundError("no episode given", "pass an episode id, prefix or path, or --all")
    if sel.repo_id:
        from gymrec.shared.dataset.reader import HubFiles

        return _dataset_jobs(HubFiles(sel.repo_id, sel.endpoint, sel.token, sel.local_dir), sel.key, sel.all_)
    if sel.local_dir:
        from gymrec.shared.dataset.reader import LocalFiles, is_dataset_dir

        if not is_dataset_dir(sel.local_dir):
            raise DatasetError(f"{sel.local_dir} is not a gymrec dataset directory", "pass the folder holding meta/ and data/")
        return _dataset_jobs(LocalFiles(sel.local_dir), sel.key, sel.all_)
    if sel.key is not None and _is_dataset_dir(Path(sel.key)):
        from gymrec.shared.dataset.reader import LocalFiles

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
    return [Job(p.name, partial(open_unless_discarded, p), explicit=False) for p in spool_all(root)]
