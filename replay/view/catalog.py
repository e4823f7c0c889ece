"""What the viewer lists: one row per episode, from the spool's attributes or a dataset's index columns.

Listing never opens an episode's frames. A spool row is its ``zarr.json`` attributes (read once per
sealed directory: sealed episodes never change); a dataset row is its index shard's small columns
(the final frame and the attributes JSON are not read). Episodes are opened only when one is shown,
through the same sources replay verifies (``SpoolSource``, ``DatasetSource``).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from gymrec.shared.errors import CorruptEpisodeError, EpisodeNotFoundError
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.directory import check_spool
from gymrec.shared.spool.episode import episode_attributes
from gymrec.shared.spool.sources import EpisodeSource, SpoolSource, spool_all
from gymrec.shared.spool.withdrawals import withdrawn

if TYPE_CHECKING:
    from gymrec.shared.dataset.index import DatasetIndex

Row = dict[str, Any]

QUALITY_COLUMNS = ("active_fraction", "inputs_per_minute", "longest_idle_s", "paused_s", "late_frames", "worst_late_ms")
LINEAGE_COLUMNS = ("parent_episode_id", "branch_step", "branched_at", "takeover")
# The study columns gymrec-serve adds (absent from older spools and datasets: then simply not shown).
STUDY_COLUMNS = ("study", "participant", "study_session")
# Text columns filtered by equality; numeric ones by a range (min_<name>, max_<name>).
TEXT_COLUMNS = ("env_id", "player", "collector", "end_reason", "pairing", *STUDY_COLUMNS)
NUMBER_COLUMNS = ("length", "return", *QUALITY_COLUMNS)
LIST_COLUMNS = ("episode_id", *TEXT_COLUMNS, "length", "return", *QUALITY_COLUMNS, *LINEAGE_COLUMNS)
# Index columns named differently from the attribute they repeat.
_ATTR_OF: Mapping[str, str] = MappingProxyType({"return": "episode_return"})


def attrs_row(attrs: EpisodeAttrs) -> Row:
    """An episode's list row from its attributes (the spool's index)."""
    values = attrs.as_dict()
    row = {name: values.get(_ATTR_OF.get(name, name)) for name in LIST_COLUMNS}
    row["pairing"] = attrs.action_pairing
    return row


class Catalog(Protocol):
    where: str

    def rows(self) -> list[Row]:
        """Every episode's row, in episode id order (the order of replay's ``#N``)."""

    def has(self, episode_id: str) -> bool:
        """Whether the source holds this episode (without listing every episode again)."""

    def open(self, episode_id: str) -> EpisodeSource:
        """The episode as replay reads it: EpisodeNotFoundError for an id not listed."""


class SpoolCatalog:
    """A spool directory's sealed episodes (root, uploaded and uploaded-local areas); never writes to it."""

    def __init__(self, spool: Path) -> None:
        self.spool = check_spool(spool, create=False)
        self.where = str(spool)
        self._lock = threading.Lock()
        self._rows: dict[Path, Row] = {}  # sealed directories are immutable: read each once
        self._paths: dict[str, Path] = {}

    def _row(self, path: Path) -> Row:
        try:
            return attrs_row(episode_attributes(path, sealed=True))
        except (OSError, ValueError) as e:  # CorruptEpisodeError included
            # A damaged episode is listed (so it is seen), with what is wrong, not hidden.
            problem = str(e) if isinstance(e, CorruptEpisodeError) else f"{path.name}/{schema.METADATA_NAME} is unreadable ({e})"
            return dict.fromkeys(LIST_COLUMNS) | {"episode_id": path.stem, "error": problem}

    def rows(self) -> list[Row]:
        paths = spool_all(self.spool)
        gone = withdrawn(self.spool)  # a participant who withdrew: not shown while the deletion is under way
        with self._lock:
            for path in paths:
                if path not in self._rows:
                    self._rows[path] = self._row(path)
            shown = [p for p in paths if self._rows[p].get("participant") not in gone]
            self._paths = {p.stem: p for p in shown}
            return sorted((self._rows[p] for p in shown), key=lambda r: str(r["episode_id"]))

    def _path(self, episode_id: str) -> Path | None:
        with self._lock:
            path = self._paths.get(episode_id)
        if path is None or not path.is_dir():  # new, or moved to another area since the last listing
            self.rows()
            with self._lock:
                path = self._paths.get(episode_id)
        if path is not None and self._rows[path].get("participant") in withdrawn(self.spool):
            return None
        return path

    def has(self, episode_id: str) -> bool:
        return self._path(episode_id) is not None

    def open(self, episode_id: str) -> EpisodeSource:
        path = self._path(episode_id)
        if path is None:
            raise EpisodeNotFoundError(f"no episode {episode_id} in {self.where}", "pick one from the list")
        return SpoolSource(path)


class DatasetCatalog:
    """A dataset (a local directory or a Hub repo), listed from its index shards' small columns."""

    def __init__(self, index: DatasetIndex) -> None:
        self.index = index
        self.where = index.where
        found: dict[str, Row] = {}
        for path in sorted({entry.index_file for entry in index.entries.values()}):
            for row in self._read(path):
                eid = str(row["episode_id"])
                if index.entries[eid].index_file == path:  # a duplicated id is listed once, as the index reads it
                    found[eid] = dict.fromkeys(LIST_COLUMNS) | row
        for eid, problem in index.conflicts.items():
            found[eid] = found[eid] | {"error": problem}
        self._rows = [found[eid] for eid in sorted(found)]

    def _read(self, path: str) -> list[Row]:
        """The list columns this shard has (older shards lack the newer ones), never its frames."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        local = self.index.files.fetch(path)
        try:
            names = set(pq.read_schema(local).names)
            return pq.read_table(local, columns=[c for c in LIST_COLUMNS if c in names]).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise CorruptEpisodeError(f"{self.where}: {path} is not a readable index shard ({e})") from e

    def rows(self) -> list[Row]:
        return self._rows

    def has(self, episode_id: str) -> bool:
        return episode_id in self.index.entries

    def open(self, episode_id: str) -> EpisodeSource:
        from gymrec.shared.dataset.reader import DatasetSource

        if episode_id not in self.index.entries:
            raise EpisodeNotFoundError(f"no episode {episode_id} in {self.where}", "pick one from the list")
        return DatasetSource(self.index, episode_id)


@dataclass(frozen=True)
class Query:
    """A list request: equality on text columns, ranges on numeric ones, one page."""

    equal: tuple[tuple[str, str], ...] = ()
    low: tuple[tuple[str, float], ...] = ()
    high: tuple[tuple[str, float], ...] = ()
    offset: int = 0
    limit: int = 50

    def matches(self, row: Row) -> bool:
        for name, value in self.equal:
            if str(row.get(name) if row.get(name) is not None else "") != value:
                return False
        for name, bound in self.low:
            if not isinstance(row.get(name), int | float) or row[name] < bound:
                return False
        for name, bound in self.high:
            if not isinstance(row.get(name), int | float) or row[name] > bound:
                return False
        return True


def page(rows: list[Row], query: Query) -> dict[str, Any]:
    """One page of the rows the query matches, each with its ``#N`` in the whole source."""
    numbered = [row | {"index": i} for i, row in enumerate(rows)]
    hits = [row for row in numbered if query.matches(row)]
    shown = [name for name in LIST_COLUMNS if any(row.get(name) is not None for row in rows)]
    choices = {name: sorted({str(r[name]) for r in rows if r.get(name) not in (None, "")}) for name in TEXT_COLUMNS
               if name in shown}  # fmt: skip
    return {"total": len(hits), "offset": query.offset, "limit": query.limit, "columns": shown, "choices": choices,
            "episodes": hits[query.offset : query.offset + query.limit]}  # fmt: skip
