"""One sealed spool episode -> its step rows and frame blocks as parquet (``shared.dataset.layout``, format 3).

The episode is read chunk by chunk and written as parquet row groups as it goes, so memory does not
grow with the episode. Every frame is checked against its recorded hash, then cut into 64-frame
temporal blocks (``shared.dataset.blocks``) that a thread pool encodes (numpy's XOR and zstd release
the GIL). The step rows carry every scalar column and, on the first step of each block, a lossless
WebP (PNG for grayscale) preview of its frame: what the Hub dataset viewer shows.

The parquet files carry the ``datasets`` features in their schema metadata (as ``datasets`` itself
writes them), so ``load_dataset`` decodes ``preview`` as an Image with no card metadata needed.
"""

from __future__ import annotations

import calendar
import io
import logging
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import zarr
from PIL import Image

from gymrec.shared.dataset import layout
from gymrec.shared.errors import CorruptEpisodeError, DatasetError
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import TIMESTAMP_FORMAT, EpisodeAttrs
from gymrec.shared.spool.episode import Episode, StepBatch
from gymrec.shared.spool.spaces import Leaf
from gymrec.uploader import encoding
from gymrec.uploader.frame_blocks import FRAMES_SCHEMA, BlockEncoder, block_starts, frames_file
from gymrec.uploader.index_row import Derived

log = logging.getLogger(__name__)

WEBP = "webp"
PNG = "png"
# Steps read (and encoded in parallel) at a time: one spool chunk, read as a view of its decoded bytes.
# 256 (four chunks) joined them with a copy: Breakout conversion 174 -> 136 us of CPU a frame at 64
# (best of 6, 505-frame episode, 2 workers, a loaded 2-core machine).
READ_BATCH = schema.CHUNK_STEPS
PENDING_BLOCKS = 4  # blocks left encoding while the next batch is read (bounds memory)
PREVIEW_FRAMES = 4
COLUMN_ENCODINGS = MappingProxyType({layout.STEP_COLUMN: "DELTA_BINARY_PACKED", "timestamp": "BYTE_STREAM_SPLIT",
                                     layout.BLOCK_FIRST_STEP_COLUMN: "DELTA_BINARY_PACKED"})  # fmt: skip


@dataclass(frozen=True)
class ConvertOptions:
    workers: int = max(1, os.cpu_count() or 1)
    # method 1 / quality 0 measured on Breakout: 195 B a frame at ~1.4k frames/s a core; method 6
    # quality 100 saves 6% at ~10 frames/s. After the column's zstd the difference is noise.
    webp_method: int = 1
    webp_quality: int = 0
    row_group_rows: int = layout.ROW_GROUP_ROWS
    row_group_bytes: int = layout.ROW_GROUP_BYTES
    zstd_level: int = 6
    compression: str | dict[str, str] = "zstd"  # a frames file's blocks are zstd already: none for them


def frames_options(options: ConvertOptions) -> ConvertOptions:
    """RowGroupWriter settings of a frames file: small row groups (a window reads one), blocks not re-compressed."""
    return replace(options, row_group_rows=layout.FRAMES_ROW_GROUP_BLOCKS, row_group_bytes=layout.FRAMES_ROW_GROUP_BYTES,
                   compression={layout.BLOCK_DATA_COLUMN: "none", layout.BLOCK_EPISODE_COLUMN: "zstd",
                                layout.BLOCK_INDEX_COLUMN: "zstd", layout.BLOCK_FIRST_STEP_COLUMN: "zstd",
                                layout.BLOCK_COUNT_COLUMN: "zstd"})  # fmt: skip


@dataclass(frozen=True)
class Converted:
    """One episode's step rows (a parquet file under the work dir) and what its index row needs."""

    episode_id: str
    env_id: str
    slug: str
    rows_file: Path
    length: int
    attrs: EpisodeAttrs  # every recorded attribute, typed
    derived: Derived  # what conversion adds to them (format, shape, info columns, the input log)
    features: datasets.Features
    final_png: bytes
    final_hash: int
    final_extra: dict[str, Any]
    preview_png: bytes
    frames_file: Path | None = None  # format 3: the episode's block rows (``frame_blocks``)
    frame_blocks: int = 0
    sealed_at: float | None = None  # the seal's wall-clock time (epoch seconds), from ``ended_at``
    chunk_digests: dict[str, int] = field(default_factory=dict)  # sealed per-array digests: its content

    @property
    def size(self) -> int:
        blocks = self.frames_file.stat().st_size if self.frames_file is not None else 0
        return self.rows_file.stat().st_size + blocks + len(self.final_png)


def _epoch(stamp: str | None) -> float | None:
    """A ``utc_now`` stamp as epoch seconds (None when absent or unreadable: the batch clock then
    starts when conversion ends)."""
    if not stamp:
        return None
    try:
        return calendar.timegm(time.strptime(stamp, TIMESTAMP_FORMAT))
    except ValueError:
        return None


# The player's timing and who chose each action (schema.STEP_TIMES). Every episode gets these columns,
# null where it has no value, so a config's schema is the same for episodes recorded before them
# (no arrays: all null) and for headless agents (no window: the spool's 0 means "not measured").
TIME_FEATURES = datasets.Features({
    schema.SHOWN_NS: datasets.Value("int64"),
    schema.DECIDED_NS: datasets.Value("int64"),
    schema.ACTOR: datasets.ClassLabel(names=list(schema.ACTORS)),
})  # fmt: skip


def _time_columns(batch: StepBatch, n: int, collector: str) -> dict[str, pa.Array]:
    columns: dict[str, pa.Array] = {}
    for name in (schema.SHOWN_NS, schema.DECIDED_NS):
        values = batch.times.get(name)
        columns[name] = pa.nulls(n, pa.int64()) if values is None else pa.array(values.astype(np.int64), mask=values == 0)
    actor = batch.times.get(schema.ACTOR)
    if actor is None:  # a headless agent's episode keeps no actor array: every step is its collector's
        columns[schema.ACTOR] = pa.array(np.full(n, schema.ACTORS.index("human" if collector == "human" else "agent")))
    else:
        columns[schema.ACTOR] = pa.array(actor.astype(np.int64))
    return columns


def image_format(leaf: Leaf) -> str:
    """WebP holds RGB/RGBA losslessly; grayscale would come back as RGB, so it goes to PNG."""
    if leaf.dtype != np.uint8 or len(leaf.shape) not in (2, 3):
        raise DatasetError(
            f"observation {leaf.name!r} ({leaf.dtype}, shape {leaf.shape}) is not an 8-bit image",
            "gymrec stores uint8 HxW or HxWxC observations only",
        )
    if len(leaf.shape) == 3 and leaf.shape[2] in (3, 4):
        return WEBP
    if len(leaf.shape) == 2 or leaf.shape[2] == 1:
        return PNG
    raise DatasetError(f"observation {leaf.name!r} has {leaf.shape[2]} channels", "expected 1, 3 or 4")


def encode_frame(frame: np.ndarray, fmt: str, options: ConvertOptions) -> bytes:
    buf = io.BytesIO()
    if fmt == WEBP:
        Image.fromarray(frame).save(buf, "WEBP", lossless=True, quality=options.webp_quality, method=options.webp_method, exact=True)
    else:
        Image.fromarray(frame.reshape(frame.shape[:2])).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def features_for(episode: Episode) -> datasets.Features:
    attrs = episode.attrs
    fields: dict[str, Any] = {
        "episode_id": datasets.Value("string"),
        "step": datasets.Value("int64"),
        layout.PREVIEW_COLUMN: datasets.Image(),
        layout.OBS_HASH_COLUMN: datasets.Value("uint64"),
        layout.ACTION_COLUMN: encoding.action_feature(attrs.action_space),
        "reward": datasets.Value("float64"),
        "terminated": datasets.Value("bool"),
        "truncated": datasets.Value("bool"),
        "timestamp": datasets.Value("float64"),
        **TIME_FEATURES,
    }
    for leaf in _extra_leaves(episode):
        fields[leaf.name] = encoding.array_feature(leaf.dtype, leaf.shape)
    for key in episode.info_keys:
        array = episode.group[f"info/{key}"]
        assert isinstance(array, zarr.Array)
        fields[layout.INFO_PREFIX + key] = encoding.array_feature(np.dtype(str(array.dtype)), ())
    return datasets.Features(fields)


def _image_leaf(episode: Episode) -> Leaf:
    key = episode.attrs.image_key
    for leaf in episode.obs_leaves:
        if leaf.name == key:
            return leaf
    raise DatasetError(f"{episode.path.name}: image_key {key!r} is not an observation leaf")


def _extra_leaves(episode: Episode) -> list[Leaf]:
    key = episode.attrs.image_key
    return [leaf for leaf in episode.obs_leaves if leaf.name != key]


class RowGroupWriter:
    """Writes record batches to one parquet file in row groups of at most ``row_group_rows`` rows and
    about ``row_group_bytes`` (the dataset viewer refuses row groups over ~300 MB)."""

    def __init__(self, path: Path, schema: pa.Schema, options: ConvertOptions) -> None:
        self.schema = schema
        self.options = options
        codecs = options.compression
        level: int | dict[str, int] = options.zstd_level if isinstance(codecs, str) else \
            {name: options.zstd_level for name, codec in codecs.items() if codec == "zstd"}  # fmt: skip
        # No min/max statistics of binary payloads (frame blocks, preview images): no reader filters on
        # them, and parquet would keep two whole values per row group in the footer (measured: the
        # frames file's size doubled).
        stats = [f.name for f in schema if not (pa.types.is_binary(f.type) or pa.types.is_struct(f.type))]
        # A step counts up by one and a wall-clock timestamp's high bytes repeat: encoded as deltas and
        # split bytes they cost ~1 B a row less each than plain values under zstd.
        encodings = {name: encoding for name, encoding in COLUMN_ENCODINGS.items() if name in schema.names}
        self.writer = pq.ParquetWriter(path, self.schema, compression=codecs, compression_level=level, use_dictionary=False,
                                       write_statistics=stats, column_encoding=encodings or None)  # fmt: skip
        self.pending: list[pa.RecordBatch] = []
        self.rows = 0
        self.bytes = 0
        self.written = 0

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        for part in batch.to_batches() if isinstance(batch, pa.Table) else [batch]:
            self.pending.append(part)
            self.rows += part.num_rows
            self.bytes += part.nbytes
            if self.rows >= self.options.row_group_rows or self.bytes >= self.options.row_group_bytes:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            table = pa.Table.from_batches(self.pending, schema=self.schema)
            per_group = self.options.row_group_rows
            if self.bytes > self.options.row_group_bytes:
                per_group = min(per_group, max(1, self.rows * self.options.row_group_bytes // self.bytes))
            self.writer.write_table(table, row_group_size=per_group)
            self.written += table.num_rows
        self.pending, self.rows, self.bytes = [], 0, 0

    def close(self) -> None:
        self.flush()
        self.writer.close()

    def abort(self) -> None:
        """Close after a failure without writing again: a flush into a full disk would raise a second,
        misleading error (pyarrow's "operation on closed file") over the real one."""
        self.pending = []
        try:
            self.writer.close()
        except (OSError, pa.ArrowException) as e:
            log.debug("closing %s after a failure: %s", self.writer, e)

    def __enter__(self) -> RowGroupWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def preview_column(start: int, stop: int, previews: dict[int, bytes]) -> pa.Array:
    """Rows ``start..stop-1`` of the preview Image column: the given steps' images, null elsewhere."""
    images = [previews.get(t) for t in range(start, stop)]
    mask = pa.array([image is None for image in images])
    return pa.StructArray.from_arrays([pa.array(images, pa.binary()), pa.nulls(stop - start, pa.string())],
                                      names=["bytes", "path"], mask=mask)  # fmt: skip


def _record_batch(episode: Episode, batch: StepBatch, previews: dict[int, bytes], hashes: np.ndarray,
                  schema: pa.Schema) -> pa.RecordBatch:  # fmt: skip
    n = batch.stop - batch.start
    columns: dict[str, pa.Array] = {
        "episode_id": pa.array([episode.id] * n, pa.string()),
        "step": pa.array(np.arange(batch.start, batch.stop, dtype=np.int64)),
        layout.PREVIEW_COLUMN: preview_column(batch.start, batch.stop, previews),
        layout.OBS_HASH_COLUMN: pa.array(hashes),
        layout.ACTION_COLUMN: encoding.encode_action_column(episode.attrs.action_space, batch.action),
        "reward": pa.array(batch.reward.astype(np.float64)),
        "terminated": pa.array(batch.terminated.astype(np.bool_)),
        "truncated": pa.array(batch.truncated.astype(np.bool_)),
        "timestamp": pa.array(batch.timestamp.astype(np.float64)),
        **_time_columns(batch, n, episode.attrs.collector),
    }
    for leaf in _extra_leaves(episode):
        columns[leaf.name] = encoding.array_column(batch.obs[leaf.name])
    for key, values in batch.info.items():
        columns[layout.INFO_PREFIX + key] = pa.array(values)
    arrays = [columns[field.name].cast(field.type) for field in schema]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def verified_hashes(episode: Episode, leaf: str, frames: np.ndarray, start: int) -> np.ndarray:
    """The stored hashes of ``frames`` (rows ``start``...), each checked against the frame itself.

    The conversion decodes every frame anyway; xxh3 of a 100 KB frame costs ~10 us, so a flipped bit
    that zstd still decodes is caught here and the episode is quarantined instead of published.
    """
    stored = episode.hashes(leaf, start, start + len(frames)).astype(np.uint64)
    for i, frame in enumerate(frames):
        if schema.row_hash(frame) != int(stored[i]):
            raise CorruptEpisodeError(f"{episode.path.name}: step {start + i} of obs/{leaf} does not match its stored "
                                      "hash", "the stored frame is damaged")  # fmt: skip
    return stored


def _encode_batches(episode: Episode, leaf: Leaf, fmt: str, options: ConvertOptions, pool: ThreadPoolExecutor,
                    blocks: BlockEncoder) -> Iterator[tuple[StepBatch, np.ndarray, dict[int, bytes]]]:  # fmt: skip
    """Each batch of steps, its verified hashes and its previews; its frames handed to ``blocks``."""
    for batch in episode.batches(READ_BATCH):
        frames = batch.obs[leaf.name]
        # The previews first: this thread waits for them below, and not for the blocks queued after.
        futures = {t: pool.submit(encode_frame, frames[t - batch.start], fmt, options) for t in block_starts(batch.start, batch.stop)}
        blocks.add(frames)
        hashes = verified_hashes(episode, leaf.name, frames, batch.start)  # while the pool encodes
        yield batch, hashes, {t: f.result() for t, f in futures.items()}


def _add_blocks(writer: RowGroupWriter, blocks: BlockEncoder, pending: int = 0) -> None:
    table = blocks.take(pending)
    if table is not None:
        writer.add(table)


def preview_steps(length: int) -> set[int]:
    """The steps of an episode of ``length`` steps its config's preview strip shows."""
    return {min(length - 1, (length * (2 * k + 1)) // (2 * PREVIEW_FRAMES)) for k in range(PREVIEW_FRAMES)}


def _strip(frames: list[np.ndarray]) -> Image.Image:
    images = [Image.fromarray(f.reshape(f.shape[:2]) if f.ndim == 3 and f.shape[2] == 1 else f) for f in frames]
    width = sum(im.width for im in images) + 4 * (len(images) - 1)
    strip = Image.new(images[0].mode, (width, max(im.height for im in images)))
    x = 0
    for im in images:
        strip.paste(im, (x, 0))
        x += im.width + 4
    return strip


def preview_strip(frames: list[np.ndarray]) -> bytes:
    """A config's preview: ``frames`` side by side, as a PNG."""
    return _png(_strip(frames))


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def convert_episode(episode: Episode, root: Path, options: ConvertOptions) -> Converted:
    """Write the episode's step rows to ``root/<id>.parquet``; return them with its index fields."""
    episode.require_steps()
    attrs = episode.attrs
    env_id, eid = attrs.env_id, episode.id
    slug = layout.env_slug(env_id)
    leaf = _image_leaf(episode)
    fmt = image_format(leaf)
    features = features_for(episode)
    root.mkdir(parents=True, exist_ok=True)
    rows_file = root / f"{eid}{layout.SHARD_SUFFIX}"
    wanted = preview_steps(episode.length)
    previews: list[np.ndarray] = []
    blocks_file = frames_file(root, eid)
    final = episode.final_obs()
    final_image = final[leaf.name]
    final_hash = int(verified_hashes(episode, leaf.name, final_image[np.newaxis], episode.length)[0])
    with ThreadPoolExecutor(max(1, options.workers), thread_name_prefix="gymrec-encode") as pool, \
            RowGroupWriter(rows_file, features.arrow_schema, options) as writer, \
            RowGroupWriter(blocks_file, FRAMES_SCHEMA, frames_options(options)) as block_writer:  # fmt: skip
        blocks = BlockEncoder(eid, pool)
        for batch, hashes, images in _encode_batches(episode, leaf, fmt, options, pool, blocks):
            writer.add(_record_batch(episode, batch, images, hashes, writer.schema))
            previews += [batch.obs[leaf.name][t - batch.start].copy() for t in sorted(wanted) if batch.start <= t < batch.stop]
            _add_blocks(block_writer, blocks, PENDING_BLOCKS)
        blocks.add(final_image[np.newaxis])
        blocks.finish()
        _add_blocks(block_writer, blocks)
    final_png = _png(Image.fromarray(final_image.reshape(final_image.shape[:2]) if fmt == PNG else final_image))
    derived = Derived(env_slug=slug, observation_format=fmt, observation_shape=tuple(leaf.shape),
                      info_columns=tuple(layout.INFO_PREFIX + key for key in episode.info_keys),
                      input_log=episode.input_log())  # the spool keeps the events as arrays; the index, as JSON
    log.info("converted %s: %d steps (%s)", eid, episode.length, fmt)
    return Converted(
        episode_id=eid, env_id=env_id, slug=slug, rows_file=rows_file, length=episode.length, attrs=attrs, derived=derived,
        features=features, final_png=final_png, final_hash=final_hash, frames_file=blocks_file, frame_blocks=blocks.blocks,
        final_extra={extra.name: np.asarray(final[extra.name]).tolist() for extra in _extra_leaves(episode)},
        preview_png=preview_strip(previews),
        sealed_at=_epoch(attrs.ended_at), chunk_digests=episode.chunk_digests,
    )  # fmt: skip
