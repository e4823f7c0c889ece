"""``gymrec-uploader compact --to-format 3``: a format-2 shard -> a format-3 shard, losslessly.

Each format-2 shard (step rows with every frame as a lossless WebP/PNG, and its index) becomes one
format-3 shard (``shared.dataset.layout``): the step rows without ``observation`` but with the
``preview`` column (the very WebP/PNG bytes of each block's first frame, not re-encoded), the frame
blocks, and the index rows pointing at them. Every decoded frame, the final ones included, is checked
against its recorded hash while converting, and the written blocks are decoded and checked again
before anything is committed: a conversion that is not bit-exact is never published.

Crash safety is the compaction's (``uploader.local``'s pending step, the Hub's atomic commits with
``parent_commit``): the new shards get new ids (derived from the old), old and new never both count,
and a rerun converts what is left. info.json turns to format 3 in the step converting the last shard.
"""

from __future__ import annotations

import io
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES, BlockCodec
from gymrec.shared.dataset.frames import open_shard, read_rows
from gymrec.shared.errors import DatasetError
from gymrec.shared.spool.schema import row_hash
from gymrec.uploader import info
from gymrec.uploader.compact import Merged, Shard, verify_blocks
from gymrec.uploader.convert import ConvertOptions, RowGroupWriter, frames_options, preview_column
from gymrec.uploader.frame_blocks import FRAMES_SCHEMA, BlockEncoder
from gymrec.uploader.index_row import INDEX_FEATURES, parse_attributes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reformatted:
    merged: Merged
    episodes: int
    frames: int


def pending(shards: list[Shard]) -> list[Shard]:
    """The shards still in format 2 (no frames shard beside them)."""
    return [s for s in shards if not s.frames]


def _decode(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image, dtype=np.uint8).reshape(shape)


def _image_bytes(cell: Any) -> bytes:
    return cell["bytes"] if isinstance(cell, dict) else cell


def step_features(data_schema: pa.Schema) -> datasets.Features:
    """The format-3 step rows' features: the format-2 ones with ``observation`` replaced by ``preview``."""
    old = datasets.Features.from_arrow_schema(data_schema)
    return datasets.Features({(layout.PREVIEW_COLUMN if k == layout.OBS_COLUMN else k): v for k, v in old.items()})


class _Episode:
    """One episode of the shard being converted: its rows, frames checked and cut into blocks."""

    def __init__(self, row: dict[str, Any], pool: ThreadPoolExecutor, where: str) -> None:
        self.row = row
        self.id = str(row["episode_id"])
        self.where = where
        self.shape = parse_attributes(row[layout.INDEX_ATTRS_COLUMN], where)[1].observation_shape
        self.blocks = BlockEncoder(self.id, pool)
        self.pool = pool

    def frames(self, images: list[bytes], hashes: list[int], first: int) -> np.ndarray:
        frames = list(self.pool.map(lambda data: _decode(data, self.shape), images))
        for i, frame in enumerate(frames):
            if row_hash(frame) != hashes[i]:
                raise DatasetError(f"{self.where}: step {first + i} of {self.id} does not match its recorded hash; "
                                   "nothing was converted", "the dataset is damaged: restore this shard from a copy")  # fmt: skip
        return np.stack(frames)

    def final(self) -> np.ndarray:
        frame = _decode(_image_bytes(self.row[layout.INDEX_FINAL_COLUMN]), self.shape)
        if row_hash(frame) != int(self.row[layout.INDEX_FINAL_HASH_COLUMN]):
            raise DatasetError(f"{self.where}: the final observation of {self.id} does not match its recorded hash",
                               "the dataset is damaged: restore this shard from a copy")  # fmt: skip
        return frame[np.newaxis]


def reformat(shard: Shard, local: dict[str, Path], root: Path, options: ConvertOptions) -> Reformatted:
    """Write the format-3 shard of one format-2 ``shard`` under ``root`` and check it bit for bit."""
    new = layout.shard_id([f"format-{layout.FORMAT_VERSION}:{shard.shard}"])
    data_file, index_file, frames_file = (layout.data_path(shard.config, new), layout.index_path(shard.config, new),
                                          layout.frames_path(shard.config, new))  # fmt: skip
    for rel in (data_file, index_file, frames_file):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    rows = sorted(pq.read_table(local[shard.index_file]).to_pylist(), key=lambda r: int(r[layout.INDEX_ROW_START_COLUMN]))
    out_rows: list[dict[str, Any]] = []
    with local[shard.data_file].open("rb") as data, ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="gymrec-reformat") as pool, \
            RowGroupWriter(root / data_file, step_features(pq.read_schema(local[shard.data_file])).arrow_schema,
                           options) as writer, \
            RowGroupWriter(root / frames_file, FRAMES_SCHEMA, frames_options(options)) as blocks:  # fmt: skip
        source = open_shard(data)
        for row in rows:
            episode = _Episode(row, pool, shard.data_file)
            start, count = int(row[layout.INDEX_ROW_START_COLUMN]), int(row[layout.INDEX_ROW_COUNT_COLUMN])
            out_start, frames_start = writer.written + writer.rows, blocks.written + blocks.rows
            whole = read_rows(source.parquet, source.starts, start, count, None, shard.data_file, shard.data_file)
            ids = set(whole.column(layout.EPISODE_ID_COLUMN).unique().to_pylist())
            if ids != {episode.id}:
                raise DatasetError(f"{shard.data_file}: the index points at rows of {sorted(ids)[:2]} for {episode.id}",
                                   "the dataset is damaged: restore this shard from a copy")  # fmt: skip
            for first in range(0, count, BLOCK_FRAMES * 4):
                table = whole.slice(first, BLOCK_FRAMES * 4)
                images = [_image_bytes(c) for c in table.column(layout.OBS_COLUMN).to_pylist()]
                episode.blocks.add(episode.frames(images, table.column(layout.OBS_HASH_COLUMN).to_pylist(), first))
                previews = {first + i: images[i] for i in range(0, len(images), BLOCK_FRAMES)}  # blocks start at multiples of 64
                columns = {name: table.column(name) for name in table.column_names if name != layout.OBS_COLUMN}
                columns[layout.PREVIEW_COLUMN] = preview_column(first, first + table.num_rows, previews)
                writer.add(pa.Table.from_pydict({f.name: columns[f.name] for f in writer.schema}, schema=writer.schema))
                _take(episode.blocks, blocks)
            episode.blocks.add(episode.final())
            episode.blocks.finish()
            _take(episode.blocks, blocks)
            out_rows.append(row | {
                layout.INDEX_DATA_FILE_COLUMN: data_file, layout.INDEX_ROW_START_COLUMN: out_start,
                layout.INDEX_FRAMES_FILE_COLUMN: frames_file, layout.INDEX_FRAMES_ROW_START_COLUMN: frames_start,
                layout.INDEX_FRAMES_ROW_COUNT_COLUMN: episode.blocks.blocks, layout.INDEX_FRAME_SHAPE_COLUMN: list(episode.shape),
            })  # fmt: skip
    pq.write_table(pa.Table.from_pylist(out_rows, schema=INDEX_FEATURES.arrow_schema), root / index_file, compression="zstd")
    verify_blocks(root / frames_file, out_rows, frames_file)
    frames = check_frames(root / frames_file, root / data_file, out_rows, frames_file)
    files = {data_file: root / data_file, index_file: root / index_file, frames_file: root / frames_file}
    return Reformatted(Merged(shard.config, new, (shard,), files), len(out_rows), frames)


def _take(encoder: BlockEncoder, writer: RowGroupWriter) -> None:
    table = encoder.take()
    if table is not None:
        writer.add(table)


def check_frames(frames: Path, data: Path, rows: list[dict[str, Any]], name: str) -> int:
    """Decode every written block and check each frame against the recorded hashes; the frames checked."""
    codec = BlockCodec()
    hashes = pq.read_table(data, columns=[layout.OBS_HASH_COLUMN]).column(layout.OBS_HASH_COLUMN).to_numpy()
    checked = 0
    with frames.open("rb") as source:
        shard = open_shard(source)
        for r in rows:
            start, steps = int(r[layout.INDEX_ROW_START_COLUMN]), int(r[layout.INDEX_ROW_COUNT_COLUMN])
            expected = [*(int(h) for h in hashes[start : start + steps]), int(r[layout.INDEX_FINAL_HASH_COLUMN])]
            table = read_rows(shard.parquet, shard.starts, int(r[layout.INDEX_FRAMES_ROW_START_COLUMN]),
                              int(r[layout.INDEX_FRAMES_ROW_COUNT_COLUMN]), None, name, name).to_pydict()  # fmt: skip
            shape = tuple(r[layout.INDEX_FRAME_SHAPE_COLUMN])
            for block, n, data in zip(table[layout.BLOCK_INDEX_COLUMN], table[layout.BLOCK_COUNT_COLUMN],
                                      table[layout.BLOCK_DATA_COLUMN], strict=True):  # fmt: skip
                for i, frame in enumerate(codec.decode(data, n, shape)):
                    if row_hash(frame) != expected[block * BLOCK_FRAMES + i]:
                        raise DatasetError(f"converting into {name}: frame {block * BLOCK_FRAMES + i} of {r['episode_id']} "
                                           "does not read back; nothing was committed", "report it")  # fmt: skip
                checked += n
    return checked


def converted_info(current: dict[str, Any]) -> dict[str, Any]:
    """info.json of the converted dataset: format 3, each config's step features and frame files."""
    out = json.loads(json.dumps(current))
    out["format_version"] = layout.FORMAT_VERSION
    out["index_features"] = INDEX_FEATURES.to_dict()
    out["shard_settings"] = info.empty()["shard_settings"]
    for config, entry in out["configs"].items():
        entry["frames_files"] = layout.frames_glob(config)
        entry["features"] = {(layout.PREVIEW_COLUMN if k == layout.OBS_COLUMN else k): v for k, v in entry["features"].items()}
    return out
