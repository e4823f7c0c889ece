"""An upload batch -> one data, one frames and one index shard per env config (``shared.dataset.layout``, format 3).

Each episode was converted to its own parquet files first (so a corrupt episode fails alone, before
it touches a shard); here those rows are copied, not re-encoded, into the config's data and frames
shards, and one index row per episode records where its rows and blocks are. The batch id, and so every path, is
deterministic in the batch's episode ids: a retried or adopted batch writes the same files again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.uploader.convert import Converted, ConvertOptions, RowGroupWriter, frames_options
from gymrec.uploader.frame_blocks import FRAMES_SCHEMA
from gymrec.uploader.index_row import (
    INDEX_FEATURES,
    Derived,
    attr_values,
    attributes_json,
    quality_totals,
    seconds,
    to_json,
)
from gymrec.uploader.published import CONTENT_DIGEST_COLUMN, content_digest, legacy_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConfigPart:
    """What one batch adds to one config: its two shard files and the totals they carry."""

    config: str
    data_file: str
    index_file: str
    frames_file: str
    episodes: int
    steps: int
    seconds: float
    env_ids: tuple[str, ...]
    backends: tuple[str, ...]
    sample: EpisodeAttrs  # one episode's attributes: spaces, image key, action meanings
    derived: Derived  # ... and what its conversion derived: format, info columns
    features: dict[str, Any]  # the data shard's datasets features, as ``Features.to_dict()``
    preview_png: bytes
    quality: dict[str, Any] = field(default_factory=dict)  # ``quality_totals`` of the part's episodes


@dataclass(frozen=True)
class Batch:
    batch_id: str
    episode_ids: tuple[str, ...]
    files: dict[str, Path]  # path in the dataset -> the local file to add
    parts: dict[str, ConfigPart] = field(default_factory=dict)
    fingerprints: dict[str, tuple[str, str]] = field(default_factory=dict)  # id -> (legacy, digest)

    @property
    def shard_paths(self) -> list[str]:
        """The batch's data and index shards: all of them at a head means the batch is there."""
        return sorted(self.files)


def batch_id(episode_ids: list[str]) -> str:
    return layout.shard_id(episode_ids)


def fingerprint(c: Converted) -> tuple[str, str]:
    """(legacy fingerprint, content digest) of the index row ``c`` gets (``uploader.published``)."""
    attributes = attributes_json(c.attrs, c.derived)
    return legacy_fingerprint(attributes, c.final_hash, c.length), content_digest(attributes, c.final_hash, c.length, c.chunk_digests)


def _index_row(c: Converted, data_file: str, row_start: int, frames_file: str, frames_start: int) -> dict[str, Any]:
    return {
        layout.INDEX_FRAMES_FILE_COLUMN: frames_file, layout.INDEX_FRAMES_ROW_START_COLUMN: frames_start,
        layout.INDEX_FRAMES_ROW_COUNT_COLUMN: c.frame_blocks, layout.INDEX_FRAME_SHAPE_COLUMN: list(c.derived.observation_shape),
        "episode_id": c.episode_id, layout.INDEX_CONFIG_COLUMN: c.slug, **attr_values(c.attrs, c.derived),
        layout.INDEX_DATA_FILE_COLUMN: data_file, layout.INDEX_ROW_START_COLUMN: row_start,
        layout.INDEX_ROW_COUNT_COLUMN: c.length, layout.INDEX_FINAL_COLUMN: {"bytes": c.final_png, "path": None},
        layout.INDEX_FINAL_HASH_COLUMN: c.final_hash, layout.INDEX_FINAL_EXTRA_COLUMN: to_json(c.final_extra),
        layout.INDEX_ATTRS_COLUMN: attributes_json(c.attrs, c.derived), CONTENT_DIGEST_COLUMN: fingerprint(c)[1],
    }  # fmt: skip


def write_index(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=INDEX_FEATURES.arrow_schema)
    pq.write_table(table, path, compression="zstd")


def copy_rows(source: Path, writer: RowGroupWriter) -> None:
    for table_batch in pq.ParquetFile(source).iter_batches(batch_size=256):
        writer.add(table_batch)


def build_batch(converted: list[Converted], root: Path, options: ConvertOptions) -> Batch:
    """Write the batch's shards under ``root`` (at their dataset paths)."""
    ids = [c.episode_id for c in converted]
    bid = batch_id(ids)
    by_config: dict[str, list[Converted]] = defaultdict(list)
    for c in sorted(converted, key=lambda c: c.episode_id):
        by_config[c.slug].append(c)
    files: dict[str, Path] = {}
    parts: dict[str, ConfigPart] = {}
    for config, group in sorted(by_config.items()):
        data_file, index_file = layout.data_path(config, bid), layout.index_path(config, bid)
        frames_file = layout.frames_path(config, bid)
        for rel in (data_file, index_file, frames_file):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
        schema = group[0].features.arrow_schema
        rows: list[dict[str, Any]] = []
        # a failed write is not written again
        with RowGroupWriter(root / data_file, schema, options) as writer, \
                RowGroupWriter(root / frames_file, FRAMES_SCHEMA, frames_options(options)) as blocks:  # fmt: skip
            for c in group:
                if c.features.arrow_schema != schema:  # a config's episodes share one schema (info keys, leaves)
                    raise ValueError(f"{c.episode_id} does not share the schema of config {config}")
                start, frames_start = writer.written + writer.rows, blocks.written + blocks.rows
                copy_rows(c.rows_file, writer)
                if c.frames_file is not None:
                    copy_rows(c.frames_file, blocks)
                rows.append(_index_row(c, data_file, start, frames_file, frames_start))
        write_index(rows, root / index_file)
        for rel in (data_file, index_file, frames_file):
            files[rel] = root / rel
        parts[config] = ConfigPart(
            config=config, data_file=data_file, index_file=index_file, frames_file=frames_file, episodes=len(group),
            steps=sum(c.length for c in group), seconds=sum(seconds(c.attrs, c.length) for c in group),
            env_ids=tuple(sorted({c.env_id for c in group})), backends=tuple(sorted({c.attrs.backend for c in group})),
            sample=group[0].attrs, derived=group[0].derived, features=group[0].features.to_dict(),
            preview_png=group[0].preview_png, quality=quality_totals([c.attrs for c in group]),
        )  # fmt: skip
    log.info("batch %s: %d episodes in %d configs", bid[:8], len(ids), len(parts))
    return Batch(bid, tuple(sorted(ids)), files, parts, {c.episode_id: fingerprint(c) for c in converted})
