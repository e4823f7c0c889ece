"""Frames of a format-3 dataset by (episode, step): a window reads only the one or two blocks holding it.

``FrameStore`` keeps each frames shard it opened (its parquet footer read once, the file handle
kept), so many windows of many episodes of one shard cost one open. A Hub shard is read by HTTP
range requests (``Files.open``): the footer, then the row groups (<= 16 blocks, <= 1 MB) a window
needs; nothing else of the repo is downloaded. Not thread-safe: one store per thread or worker.

``verify=True`` checks every decoded frame against the recorded ``observation_hash`` (the xxh3
the recorder computed from the frame it showed), the final frame against the index's
``final_observation_hash``: a flipped byte anywhere between the recorder and the reader is caught.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES, BlockCodec
from gymrec.shared.dataset.index import DatasetIndex, FramesLocation, IndexEntry
from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool.schema import row_hash

# Row groups of block bytes kept per store (each <= 1 MB: layout.FRAMES_ROW_GROUP_BYTES): windows in random order hit
# the 16 blocks of a row group 16 times an epoch; reading its parquet once, not 16 times, took Breakout's
# R-read from 16.4k to 20.7k frames/s (make bench, idle 2-core machine).
CACHED_GROUPS = 32
_BLOCK_COLUMNS = (layout.BLOCK_EPISODE_COLUMN, layout.BLOCK_INDEX_COLUMN, layout.BLOCK_COUNT_COLUMN, layout.BLOCK_DATA_COLUMN)


@dataclass
class _Shard:
    source: BinaryIO
    parquet: pq.ParquetFile
    starts: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # row group i's first row; last: total


def open_shard(source: BinaryIO) -> _Shard:
    """A parquet file's reader and the first row of each row group (ArrowException/OSError if unreadable)."""
    parquet = pq.ParquetFile(source)
    sizes = [parquet.metadata.row_group(i).num_rows for i in range(parquet.metadata.num_row_groups)]
    return _Shard(source, parquet, np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]))


def read_rows(shard: pq.ParquetFile, starts: np.ndarray, start: int, count: int, columns: list[str] | None,
              where: str, name: str) -> pa.Table:  # fmt: skip
    """Rows [start, start + count) of a parquet file, reading only the row groups that hold them."""
    stop = start + count
    if start < 0 or stop > starts[-1]:
        raise CorruptEpisodeError(f"{where}: {name} holds {starts[-1]} rows, the index says rows {start}..{stop}",
                                  "the dataset is damaged")  # fmt: skip
    first = int(np.searchsorted(starts, start, side="right")) - 1
    last = int(np.searchsorted(starts, stop, side="left"))  # exclusive
    try:
        table = shard.read_row_groups(list(range(first, max(last, first + 1))), columns=columns)
    except (pa.ArrowException, OSError) as e:
        raise CorruptEpisodeError(f"{where}: {name} is not readable parquet ({e})", "the dataset is damaged") from e
    return table.slice(start - int(starts[first]), count)


class FrameStore:
    """Opens frames shards (and, to verify, the step rows' hashes) of one dataset, each once."""

    def __init__(self, index: DatasetIndex) -> None:
        self.index = index
        self._shards: dict[str, _Shard] = {}
        self.codec = BlockCodec()
        self._scratch = np.empty(0, np.uint8)
        self._groups: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()

    def block_rows(self, path: str, start: int, count: int, where: str) -> pa.Table:
        """Rows [start, start + count) of the frames shard ``path`` (block columns), through the row-group cache."""
        shard = self.shard(path)
        starts = shard.starts
        if start < 0 or start + count > starts[-1]:
            raise CorruptEpisodeError(f"{where}: {path} holds {starts[-1]} rows, the index says rows "
                                      f"{start}..{start + count}", "the dataset is damaged")  # fmt: skip
        first = int(np.searchsorted(starts, start, side="right")) - 1
        last = int(np.searchsorted(starts, start + count, side="left"))  # exclusive
        tables = []
        for group in range(first, max(last, first + 1)):
            table = self._groups.get((path, group))
            if table is None:
                table = read_rows(shard.parquet, starts, int(starts[group]), int(starts[group + 1] - starts[group]),
                                  list(_BLOCK_COLUMNS), where, path)  # fmt: skip
                self._groups[(path, group)] = table
                while len(self._groups) > CACHED_GROUPS:
                    self._groups.popitem(last=False)
            self._groups.move_to_end((path, group))
            tables.append(table)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
        return table.slice(start - int(starts[first]), count)

    def shard(self, path: str) -> _Shard:
        if path not in self._shards:
            source = self.index.files.open(path)
            try:
                self._shards[path] = open_shard(source)
            except (pa.ArrowException, OSError) as e:
                source.close()
                raise CorruptEpisodeError(f"{self.index.where}: {path} is not readable parquet ({e})",
                                          "the dataset is damaged") from e  # fmt: skip
        return self._shards[path]

    def scratch(self, n: int, shape: tuple[int, ...]) -> np.ndarray:
        """A reused (n, *shape) uint8 array for a block read in part: one allocation, not one a window."""
        size = n * int(np.prod(shape, dtype=np.int64))
        if self._scratch.size < size:
            self._scratch = np.empty(size, np.uint8)
        return self._scratch[:size].reshape(n, *shape)

    def episode(self, episode_id: str, verify: bool = False) -> EpisodeFrames:
        entry = self.index.entries.get(episode_id)
        if entry is None:
            raise CorruptEpisodeError(f"{self.index.where} has no episode {episode_id}")
        if entry.frames is None:
            raise CorruptEpisodeError(f"{self.index.where}: episode {episode_id} has no frame blocks (a format-2 "
                                      "dataset)", "convert it with: gymrec-uploader compact --to-format 3")  # fmt: skip
        return EpisodeFrames(self, entry, entry.frames, verify)

    def close(self) -> None:
        for shard in self._shards.values():
            shard.source.close()
        self._shards.clear()
        self._groups.clear()

    def __enter__(self) -> FrameStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EpisodeFrames:
    """One episode's ``length + 1`` observation frames (the final one included), read by step ranges."""

    def __init__(self, store: FrameStore, entry: IndexEntry, location: FramesLocation, verify: bool) -> None:
        self.store = store
        self.entry = entry
        self.location = location
        self.verify = verify
        self.where = f"{store.index.where}:{entry.episode_id}"
        self.steps = entry.row_count
        self.shape = location.shape
        self._hashes: np.ndarray | None = None
        expected = -(-(self.steps + 1) // BLOCK_FRAMES)
        if location.row_count != expected:
            raise CorruptEpisodeError(f"{self.where}: {location.row_count} frame blocks for {self.steps + 1} frames "
                                      f"(expected {expected})", "the dataset is damaged")  # fmt: skip

    def __len__(self) -> int:
        return self.steps + 1

    def hashes(self) -> np.ndarray:
        """The recorded hash of every frame (uint64, ``len(self)``), read once from the step rows."""
        if self._hashes is None:
            entry = self.entry
            shard = self.store.shard(entry.data_file)
            table = read_rows(shard.parquet, shard.starts, entry.row_start, entry.row_count,
                              [layout.EPISODE_ID_COLUMN, layout.OBS_HASH_COLUMN], self.where, entry.data_file)  # fmt: skip
            ids = table.column(layout.EPISODE_ID_COLUMN).unique().to_pylist()
            if ids != [entry.episode_id]:
                raise CorruptEpisodeError(f"{self.where}: the index points at step rows of {ids[:2]} in {entry.data_file}",
                                          "the dataset is damaged")  # fmt: skip
            rows = table.column(layout.OBS_HASH_COLUMN).to_numpy().astype(np.uint64)
            self._hashes = np.append(rows, np.uint64(self.location.final_hash))
        return self._hashes

    def read(self, start: int, stop: int) -> np.ndarray:
        """Frames ``start..stop-1`` as (stop - start, *shape) uint8, from the blocks holding them only.

        A block the range covers whole decodes straight into the returned array; a part of one goes
        through the store's scratch block. Breakout stride-64 windows: 52 -> 24 us a frame (CPU, best
        of 3, a loaded 2-core machine), with the block codec's changes; the block bytes stay arrow's.
        """
        if not 0 <= start < stop <= len(self):
            raise IndexError(f"frames {start}..{stop} of an episode of {len(self)} frames")
        first, last = start // BLOCK_FRAMES, (stop - 1) // BLOCK_FRAMES
        loc = self.location
        table = self.store.block_rows(loc.file, loc.row_start + first, last - first + 1, self.where)
        ids, blocks, counts, data = (table.column(name) for name in _BLOCK_COLUMNS)
        out = np.empty((stop - start, *self.shape), np.uint8)
        for i, block in enumerate(range(first, last + 1)):
            low = block * BLOCK_FRAMES
            n = min(BLOCK_FRAMES, len(self) - low)
            if (ids[i].as_py(), blocks[i].as_py(), counts[i].as_py()) != (self.entry.episode_id, block, n):
                raise CorruptEpisodeError(f"{self.where}: block {block} in {loc.file} is not this episode's",
                                          "the dataset is damaged")  # fmt: skip
            a, b = max(start, low), min(stop, low + n)
            buffer = data[i].as_buffer()  # no copy; a null block is refused by the codec as damaged
            raw = memoryview(buffer) if buffer is not None else memoryview(b"")
            if (a, b) == (low, low + n):
                self.store.codec.decode(raw, n, self.shape, out=out[a - start : b - start])
            else:
                frames = self.store.codec.decode(raw, n, self.shape, out=self.store.scratch(n, self.shape))
                out[a - start : b - start] = frames[a - low : b - low]
        if self.verify:
            self.check(start, out)
        return out

    def check(self, start: int, frames: np.ndarray) -> None:
        """Each frame against its recorded hash; CorruptEpisodeError naming the first that differs."""
        expected = self.hashes()[start : start + len(frames)]
        for i, frame in enumerate(frames):
            if row_hash(frame) != int(expected[i]):
                raise CorruptEpisodeError(f"{self.where}: frame {start + i} does not match its recorded hash",
                                          "the dataset is damaged; re-upload the episode from its spool")  # fmt: skip
