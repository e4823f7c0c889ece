"""A dataset's episode index: which episodes it holds and where their rows are, and how a key names them.

Built from the index shards' few location columns; a duplicated id costs reading its own rows only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout
from gymrec.shared.errors import AmbiguousEpisodeError, CorruptEpisodeError, EpisodeNotFoundError

if TYPE_CHECKING:
    from gymrec.shared.dataset.reader import Files

log = logging.getLogger(__name__)
# uploader.published's column: the same episode content gives the same digest (older shards lack it).
CONTENT_DIGEST_COLUMN = "content_digest"

MAX_INDEX_DIGITS = 6  # a key of at most this many digits is an index, not an id prefix
_INDEX_COLUMNS = ("episode_id", layout.INDEX_DATA_FILE_COLUMN, layout.INDEX_ROW_START_COLUMN,
                  layout.INDEX_ROW_COUNT_COLUMN)  # fmt: skip
# Format 3's frame-block location, and what a frame reader needs to decode and verify without the whole row.
_FRAMES_COLUMNS = (layout.INDEX_FRAMES_FILE_COLUMN, layout.INDEX_FRAMES_ROW_START_COLUMN,
                   layout.INDEX_FRAMES_ROW_COUNT_COLUMN, layout.INDEX_FRAME_SHAPE_COLUMN,
                   layout.INDEX_FINAL_HASH_COLUMN)  # fmt: skip



@dataclass(frozen=True)
class IndexEntry:
    episode_id: str
    index_file: str
    data_file: str
    row_start: int
    row_count: int  # the episode's steps: it has row_count + 1 observations
    frames: FramesLocation | None = None  # format 3; None for format 2 (frames in the step rows)


@dataclass(frozen=True)
class FramesLocation:
    """Where one episode's frame blocks are (format 3): rows [row_start, row_start + row_count) of ``file``."""

    file: str
    row_start: int
    row_count: int
    shape: tuple[int, ...]
    final_hash: int


class DatasetIndex:
    """Every episode's index row (without the final images, read only for the episode replayed).

    An episode listed more than once (published twice by a gymrec before exactly-once, or two copies
    of a spool) is read once when every copy holds the same content, with a warning naming it; with
    different contents that one episode is corrupt (``row`` says so) and the rest stays readable.
    Telling them apart reads the duplicated ids' rows only: a sound index costs nothing more.
    """

    def __init__(self, files: Files) -> None:
        self.files = files
        self.where = files.where
        self.info = files.info()
        self.format = layout.format_of(self.info)
        copies: dict[str, list[IndexEntry]] = {}
        for path in files.index_files():
            local = files.fetch(path)
            try:
                # a shard says itself whether it has frame blocks: a dataset half-way through
                # ``compact --to-format 3`` reads as it is
                blocks = layout.INDEX_FRAMES_FILE_COLUMN in pq.read_schema(local).names
                table = pq.read_table(local, columns=list(_INDEX_COLUMNS) + (list(_FRAMES_COLUMNS) if blocks else []))
            except (pa.ArrowException, OSError) as e:
                raise CorruptEpisodeError(f"{self.where}: {path} is not a readable index shard ({e})") from e
            for row in table.to_pylist():
                eid = str(row["episode_id"])
                copies.setdefault(eid, []).append(
                    IndexEntry(eid, path, str(row[layout.INDEX_DATA_FILE_COLUMN]), int(row[layout.INDEX_ROW_START_COLUMN]),
                               int(row[layout.INDEX_ROW_COUNT_COLUMN]), _frames_location(row, self.where, path)))  # fmt: skip
        self.entries: dict[str, IndexEntry] = {eid: listed[0] for eid, listed in copies.items()}
        self.conflicts: dict[str, str] = {}
        for eid, listed in sorted(copies.items()):
            if len(listed) > 1:
                self._duplicated(eid, listed)

    def _duplicated(self, eid: str, listed: list[IndexEntry]) -> None:
        contents = {self._content(entry) for entry in listed}
        if len(contents) == 1:
            log.warning("%s: episode %s is listed %d times with the same content; read once "
                        "(gymrec-uploader compact removes the copies)", self.where, eid, len(listed))
        else:
            self.conflicts[eid] = f"{self.where}: episode {eid} is listed {len(listed)} times with different content"

    def _rows(self, entry: IndexEntry, columns: list[str] | None = None) -> list[dict[str, Any]]:
        local = self.files.fetch(entry.index_file)
        try:
            return pq.read_table(local, columns=columns, filters=[("episode_id", "=", entry.episode_id)]).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise CorruptEpisodeError(f"{self.where}: {entry.index_file} is not a readable index shard ({e})") from e

    def _content(self, entry: IndexEntry) -> str:
        """What a copy holds: its content digest, or (older shards) its attributes, final frame and length."""
        local = self.files.fetch(entry.index_file)
        names = set(pq.read_schema(local).names)
        digest = [CONTENT_DIGEST_COLUMN] if CONTENT_DIGEST_COLUMN in names else []
        legacy = [layout.INDEX_ATTRS_COLUMN, layout.INDEX_FINAL_HASH_COLUMN, layout.INDEX_ROW_COUNT_COLUMN]
        row = self._rows(entry, digest + legacy)[0]
        if digest and row[CONTENT_DIGEST_COLUMN]:
            return str(row[CONTENT_DIGEST_COLUMN])
        return json.dumps([row[name] for name in legacy], default=str)

    def episode_ids(self) -> list[str]:
        return sorted(self.entries)

    def row(self, episode_id: str) -> dict[str, Any]:
        """The whole index row of one episode (its attributes and final observation included)."""
        if episode_id in self.conflicts:
            raise CorruptEpisodeError(self.conflicts[episode_id], "keep the right copy, then run gymrec-uploader compact")
        entry = self.entries[episode_id]
        rows = self._rows(entry)
        if not rows:
            raise CorruptEpisodeError(f"{self.where}: {entry.index_file} has no row for {episode_id}")
        return rows[0]  # more than one: the same content, listed twice in one shard


def _frames_location(row: dict[str, Any], where: str, path: str) -> FramesLocation | None:
    if row.get(layout.INDEX_FRAMES_FILE_COLUMN) is None:
        return None
    try:
        return FramesLocation(str(row[layout.INDEX_FRAMES_FILE_COLUMN]), int(row[layout.INDEX_FRAMES_ROW_START_COLUMN]),
                              int(row[layout.INDEX_FRAMES_ROW_COUNT_COLUMN]),
                              tuple(int(n) for n in row[layout.INDEX_FRAME_SHAPE_COLUMN]),
                              int(row[layout.INDEX_FINAL_HASH_COLUMN]))  # fmt: skip
    except (TypeError, ValueError) as e:
        raise CorruptEpisodeError(f"{where}: {path} has an unreadable frames location ({e})", "the dataset is damaged") from e


class EpisodeIds(Protocol):
    where: str

    def episode_ids(self) -> list[str]: ...


def resolve_ids(files: EpisodeIds, key: str | None, all_: bool) -> list[str]:
    """The episode ids a key names: an id, a unique prefix, or an index (in id order); or all of them.

    ``#N`` is always an index. A bare number is an index only when no episode id starts with it:
    uuids often begin with digits, and a prefix must never be silently read as a position.
    """
    ids = files.episode_ids()
    if all_ or key is None:
        return ids
    explicit = key.startswith("#") and key[1:].isdigit()
    matches = [] if explicit else [i for i in ids if i.startswith(key.lower())]
    as_index = key[1:] if explicit else key
    if as_index.isdigit() and len(as_index) <= MAX_INDEX_DIGITS and (explicit or not matches):
        index = int(as_index)
        if index >= len(ids):
            raise EpisodeNotFoundError(f"{files.where} holds {len(ids)} episodes; there is no index {index}", "use 0..N-1 or an id")
        return [ids[index]]
    if not matches:
        raise EpisodeNotFoundError(f"no episode in {files.where} matches {key!r}", "check the id or prefix")
    if len(matches) > 1:
        raise AmbiguousEpisodeError(f"{key!r} matches {len(matches)} episodes in {files.where}", "give more of the id")
    return matches
