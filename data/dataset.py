"""A dataset episode for the training reader. Its step rows are read once through
``shared.dataset.reader.DatasetSource`` (on the Hub: byte ranges of the one data shard holding them).
Frames are read per window: in format 3 from the one or two 64-frame blocks holding them
(``shared.dataset.frames``, one ``FrameStore`` per process keeps each frames shard open); in format 2
each frame is a lossless WebP or PNG of the step rows, decoded one by one.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from gymrec.data.episodes import StepArrays, as_hwc, check_frames, collector_actor
from gymrec.shared.dataset import layout
from gymrec.shared.dataset.frames import EpisodeFrames, FrameStore
from gymrec.shared.dataset.index import DatasetIndex
from gymrec.shared.dataset.reader import DatasetSource
from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool import schema
from gymrec.shared.spool.spaces import action_leaves


def action_arrays(desc: dict[str, Any], column: pa.ChunkedArray) -> dict[str, np.ndarray]:
    """The action column back as the spool's leaves: (T, *shape) arrays in the leaf dtypes."""
    leaves = action_leaves(desc)
    if desc["type"] == "Dict":
        struct = column.combine_chunks()
        return {leaf.name: np.asarray(struct.field(leaf.name).to_pylist(), dtype=leaf.dtype).reshape(-1, *leaf.shape)
                for leaf in leaves}  # fmt: skip
    (leaf,) = leaves
    return {leaf.name: np.asarray(column.to_pylist(), dtype=leaf.dtype).reshape(-1, *leaf.shape)}


class DatasetEpisode:
    def __init__(self, index: DatasetIndex, episode_id: str, store: FrameStore) -> None:
        self.source = DatasetSource(index, episode_id)
        self.index = index
        self.episode_id = episode_id
        self.length = self.source.length
        self.where = self.source.where
        (self._leaf,) = [leaf for leaf in self.source.obs_leaves if leaf.name == self.source.image_key]
        table = self.source.table
        if table.num_rows != self.length:
            raise CorruptEpisodeError(f"{self.where}: {table.num_rows} rows for {self.length} steps", "the dataset is damaged")
        self._blocks: dict[bool, EpisodeFrames] = {}
        if index.entries[episode_id].frames is not None:
            self._blocks = {verify: store.episode(episode_id, verify) for verify in (False, True)}
            return
        images = self._column(layout.OBS_COLUMN).combine_chunks()
        self._images = images.field("bytes") if pa.types.is_struct(images.type) else images
        self._hashes = self._column(layout.OBS_HASH_COLUMN).to_numpy()

    def _column(self, name: str) -> pa.ChunkedArray:
        if name not in self.source.table.column_names:
            raise CorruptEpisodeError(f"{self.where}: the parquet has no {name!r} column", "the dataset is damaged")
        return self.source.table.column(name)

    def _optional_ns(self, name: str) -> np.ndarray:
        if name not in self.source.table.column_names:
            return np.zeros(self.length, dtype=np.int64)
        return self.source.table.column(name).fill_null(0).to_numpy().astype(np.int64)

    def steps(self) -> StepArrays:
        table = self.source.table
        actor = (collector_actor(self.source.attrs.collector, self.length) if schema.ACTOR not in table.column_names
                 else table.column(schema.ACTOR).to_numpy().astype(np.int8))  # fmt: skip
        return StepArrays(
            action=action_arrays(self.source.attrs.action_space, self._column(layout.ACTION_COLUMN)),
            reward=self._column("reward").to_numpy().astype(np.float64),
            terminated=self._column("terminated").to_numpy(zero_copy_only=False).astype(np.bool_),
            truncated=self._column("truncated").to_numpy(zero_copy_only=False).astype(np.bool_),
            timestamp=self._column("timestamp").to_numpy().astype(np.float64),
            shown_ns=self._optional_ns(schema.SHOWN_NS),
            decided_ns=self._optional_ns(schema.DECIDED_NS),
            actor=actor,
        )

    def _decode(self, t: int) -> np.ndarray:
        try:
            with Image.open(io.BytesIO(self._images[t].as_py())) as image:
                return np.asarray(image).astype(self._leaf.dtype, copy=False).reshape(self._leaf.shape)
        except (OSError, ValueError) as e:
            raise CorruptEpisodeError(f"{self.where}: the frame of step {t} cannot be decoded ({e})") from e

    def _final(self, verify: bool) -> np.ndarray:
        """The observation after the last action: format 2 keeps it in the index row."""
        frame = self.source.observation(self.length)[self._leaf.name]
        if verify:
            recorded = self.index.row(self.episode_id)[layout.INDEX_FINAL_HASH_COLUMN]
            check_frames(frame[np.newaxis], np.asarray([recorded], np.uint64), self.length, self.where)
        return frame

    def frames(self, start: int, stop: int, verify: bool) -> np.ndarray:
        if self._blocks:
            return as_hwc(self._blocks[verify].read(start, stop))
        rows = [self._decode(t) for t in range(start, min(stop, self.length))]
        if rows and verify:
            check_frames(np.stack(rows), self._hashes[start : start + len(rows)], start, self.where)
        if stop > self.length:
            rows.append(self._final(verify))
        return as_hwc(np.stack(rows))
