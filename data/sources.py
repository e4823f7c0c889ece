"""Where the training reader's episodes come from: a local dataset, a Hub repo or a spool.

A source is a small frozen value (picklable, nothing open). ``open()`` lists its episodes with the
fields selection filters on, read from the episode index (a dataset) or the attributes (a spool),
never from the frames, and gives what opens one episode later, in whichever process reads it.
A Hub repo is never downloaded whole: its index shards are fetched, then each episode's rows by range.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.data.episodes import EpisodeReader
from gymrec.shared.dataset import layout
from gymrec.shared.errors import CorruptEpisodeError, DatasetError
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.episode import episode_attributes
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.spool.sources import spool_all

log = logging.getLogger(__name__)
# Index columns selection never needs: images and whole JSON documents (an input log can be megabytes).
HEAVY_COLUMNS = frozenset({layout.INDEX_FINAL_COLUMN, layout.INDEX_ATTRS_COLUMN, layout.INDEX_FINAL_EXTRA_COLUMN,
                           "input_log"})  # fmt: skip


@dataclass(frozen=True)
class EpisodeEntry:
    episode_id: str
    length: int
    fields: dict[str, Any]  # the episode's index row (light columns), or a spool episode's attributes


@dataclass(frozen=True)
class Catalog:
    where: str
    entries: tuple[EpisodeEntry, ...]  # in episode id order

    def episode_ids(self) -> list[str]:
        return [e.episode_id for e in self.entries]


class Opener(Protocol):
    def __call__(self, episode_id: str, context: dict[str, Any]) -> EpisodeReader:
        """Open one episode; ``context`` is the reading process's own (shared handles such as a frame store)."""


class Source(Protocol):
    @property
    def where(self) -> str: ...

    def open(self) -> tuple[Catalog, Opener]:
        """The episodes and what opens one: read once, in the process that builds the window index."""


@dataclass(frozen=True)
class _DatasetOpener:
    """Holds the episode index (plain values and the files' address, no open file): pickled to workers."""

    index: Any  # shared.dataset.index.DatasetIndex

    def __call__(self, episode_id: str, context: dict[str, Any]) -> EpisodeReader:
        from gymrec.data.dataset import DatasetEpisode
        from gymrec.shared.dataset.frames import FrameStore

        store = context.get("frames")
        if store is None:
            store = context["frames"] = FrameStore(self.index)
        return DatasetEpisode(self.index, episode_id, store)


def _dataset_catalog(files: Any) -> tuple[Catalog, Opener]:
    from gymrec.shared.dataset.index import DatasetIndex

    index = DatasetIndex(files)
    rows: dict[str, dict[str, Any]] = {}
    for path in files.index_files():
        local = files.fetch(path)
        try:
            names = [n for n in pq.read_schema(local).names if n not in HEAVY_COLUMNS]
            table = pq.read_table(local, columns=names)
        except (pa.ArrowException, OSError) as e:
            raise CorruptEpisodeError(f"{files.where}: {path} is not a readable index shard ({e})") from e
        for row in table.to_pylist():
            entry = index.entries.get(str(row["episode_id"]))
            if entry is not None and entry.index_file == path and row["episode_id"] not in rows:
                rows[entry.episode_id] = row
    for eid, problem in index.conflicts.items():
        log.warning("%s; left out", problem)
        rows.pop(eid, None)
    entries = tuple(EpisodeEntry(eid, int(rows[eid][layout.INDEX_ROW_COUNT_COLUMN]), rows[eid]) for eid in sorted(rows))
    return Catalog(files.where, entries), _DatasetOpener(index)


@dataclass(frozen=True)
class LocalDataset:
    """A gymrec dataset directory (what ``gymrec-uploader --local-dir`` writes)."""

    root: Path

    @property
    def where(self) -> str:
        return str(self.root)

    def _files(self) -> Any:
        from gymrec.shared.dataset.reader import LocalFiles

        if not self.root.is_dir():
            raise DatasetError(f"{self.root} is not a directory", "pass a gymrec dataset directory")
        return LocalFiles(self.root)

    def open(self) -> tuple[Catalog, Opener]:
        return _dataset_catalog(self._files())


@dataclass(frozen=True)
class HubDataset:
    """A gymrec dataset repo on the Hub (or any Hub-compatible ``endpoint``); the token is optional.
    ``local_dir``: where the index shards go (default: the Hugging Face cache)."""

    repo_id: str
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)
    local_dir: Path | None = None

    @property
    def where(self) -> str:
        return self.repo_id

    def _files(self) -> Any:
        from gymrec.shared.dataset.reader import HubFiles

        return HubFiles(self.repo_id, self.endpoint, self.token, self.local_dir)

    def open(self) -> tuple[Catalog, Opener]:
        return _dataset_catalog(self._files())


@dataclass(frozen=True)
class _SpoolOpener:
    paths: dict[str, Path]

    def __call__(self, episode_id: str, context: dict[str, Any]) -> EpisodeReader:
        from gymrec.data.spool import SpoolEpisode

        return SpoolEpisode(self.paths[episode_id])


def spool_fields(attrs: EpisodeAttrs) -> dict[str, Any]:
    """A spool episode's attributes under the episode index's column names, so one selection fits both."""
    fields = {k: v for k, v in attrs.as_dict().items() if k != "input_log"}
    return fields | {"return": attrs.episode_return, layout.INDEX_CONFIG_COLUMN: layout.env_slug(attrs.env_id),
                     "pairing": attrs.action_pairing}  # fmt: skip


@dataclass(frozen=True)
class SpoolDir:
    """A spool directory: its sealed episodes (uploaded ones included), never the discarded or empty ones."""

    root: Path

    @property
    def where(self) -> str:
        return str(self.root)

    def _sealed(self) -> dict[str, tuple[Path, EpisodeAttrs]]:
        if not self.root.is_dir():
            raise DatasetError(f"{self.root} is not a directory", "pass a gymrec spool directory")
        found: dict[str, tuple[Path, EpisodeAttrs]] = {}
        for path in spool_all(self.root):
            try:
                attrs = episode_attributes(path, sealed=True)
            except (CorruptEpisodeError, OSError) as e:
                log.warning("%s: unreadable attributes (%s); left out", path, e)
                continue
            if attrs.end_reason != EndReason.DISCARDED and (attrs.length or 0) > 0:
                found.setdefault(attrs.episode_id, (path, attrs))
        return found

    def open(self) -> tuple[Catalog, Opener]:
        sealed = self._sealed()
        entries = tuple(EpisodeEntry(eid, int(attrs.length or 0), spool_fields(attrs))
                        for eid, (_, attrs) in sorted(sealed.items()))  # fmt: skip
        return Catalog(self.where, entries), _SpoolOpener({eid: path for eid, (path, _) in sealed.items()})
