"""``gymrec-uploader compact``: merge each config's small shards into large ones, in one commit.

A group of shards (data and index, smallest first, up to ``target_bytes`` of data) becomes one shard
whose id derives from the ids it replaces, so a retried compaction writes the same paths. Before
anything is committed the merged files are read back and checked: the same episodes, each exactly
once, with the same row counts and the same observation hashes in the same order. The commit adds
the new shards, deletes the old ones and updates info.json, with ``parent_commit`` so a racing
uploader's batch is never lost (a conflict re-reads the head and plans again).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared import layout
from gymrec.shared.errors import DatasetError
from gymrec.uploader.convert import ConvertOptions, RowGroupWriter
from gymrec.uploader.shards import INDEX_FEATURES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    config: str
    shard: str
    size: int

    @property
    def data_file(self) -> str:
        return layout.data_path(self.config, self.shard)

    @property
    def index_file(self) -> str:
        return layout.index_path(self.config, self.shard)


@dataclass(frozen=True)
class Merged:
    config: str
    shard: str
    replaces: tuple[Shard, ...]
    files: dict[str, Path]  # path in the dataset -> the merged local file

    @property
    def deleted(self) -> list[str]:
        return sorted(p for s in self.replaces for p in (s.data_file, s.index_file))


def shards_of(paths: dict[str, int]) -> list[Shard]:
    """The shards whose data and index files are both listed (``paths``: path -> size)."""
    out = []
    for path, size in paths.items():
        parts = path.split("/")
        if path.startswith(layout.DATA_DIR + "/") and len(parts) == 4 and path.endswith(layout.SHARD_SUFFIX):
            config, shard = parts[1], parts[3][: -len(layout.SHARD_SUFFIX)]
            if layout.index_path(config, shard) in paths:
                out.append(Shard(config, shard, size))
    return sorted(out, key=lambda s: (s.config, s.size, s.shard))


def plan(shards: list[Shard], target_bytes: int) -> list[tuple[Shard, ...]]:
    """Groups of at least two shards of one config, smallest first, each up to ``target_bytes``."""
    by_config: dict[str, list[Shard]] = defaultdict(list)
    for s in shards:
        if s.size < target_bytes:
            by_config[s.config].append(s)
    groups: list[tuple[Shard, ...]] = []
    for config in sorted(by_config):
        group: list[Shard] = []
        total = 0
        for s in by_config[config]:
            if group and total + s.size > target_bytes:
                if len(group) > 1:
                    groups.append(tuple(group))
                group, total = [], 0
            group.append(s)
            total += s.size
        if len(group) > 1:
            groups.append(tuple(group))
    return groups


def _hashes(table: pa.Table) -> list[Any]:
    return table.column(layout.OBS_HASH_COLUMN).to_pylist()


def merge(group: tuple[Shard, ...], local: dict[str, Path], root: Path, options: ConvertOptions) -> Merged:
    """Write the merged data and index shard of ``group`` under ``root`` and verify them."""
    config = group[0].config
    new = layout.shard_id(s.shard for s in group)
    data_file, index_file = layout.data_path(config, new), layout.index_path(config, new)
    for rel in (data_file, index_file):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    first = pq.ParquetFile(local[group[0].data_file])
    writer = RowGroupWriter(root / data_file, first.schema_arrow, options)
    rows: list[dict[str, Any]] = []
    expected_hashes: list[Any] = []
    try:
        for s in sorted(group, key=lambda s: s.shard):
            offset = writer.written + writer.rows
            shard = pq.ParquetFile(local[s.data_file])
            if shard.schema_arrow != first.schema_arrow:
                raise DatasetError(f"{s.data_file} has another schema than {group[0].data_file}", "compact it separately")
            for batch in shard.iter_batches(batch_size=256):
                writer.add(batch)
                expected_hashes += batch.column(layout.OBS_HASH_COLUMN).to_pylist()
            for row in pq.read_table(local[s.index_file]).to_pylist():
                rows.append(row | {layout.INDEX_DATA_FILE_COLUMN: data_file,
                                   layout.INDEX_ROW_START_COLUMN: offset + int(row[layout.INDEX_ROW_START_COLUMN])})
    finally:
        writer.close()
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_FEATURES.arrow_schema), root / index_file, compression="zstd")
    _verify(root / data_file, root / index_file, rows, expected_hashes, data_file)
    return Merged(config, new, group, {data_file: root / data_file, index_file: root / index_file})


def _verify(data: Path, index: Path, rows: list[dict[str, Any]], hashes: list[Any], name: str) -> None:
    """Read the merged files back: nothing lost, nothing doubled, every frame hash in its place."""
    table = pq.read_table(data, columns=[layout.EPISODE_ID_COLUMN, layout.STEP_COLUMN, layout.OBS_HASH_COLUMN])
    ids = [r["episode_id"] for r in pq.read_table(index, columns=["episode_id"]).to_pylist()]
    problems = []
    if len(ids) != len(set(ids)) or len(ids) != len(rows):
        problems.append("an episode is listed twice")
    if table.num_rows != sum(int(r[layout.INDEX_ROW_COUNT_COLUMN]) for r in rows) or _hashes(table) != hashes:
        problems.append("rows or observation hashes differ from the shards it replaces")
    for r in rows:
        part = table.slice(int(r[layout.INDEX_ROW_START_COLUMN]), int(r[layout.INDEX_ROW_COUNT_COLUMN]))
        if set(part.column(layout.EPISODE_ID_COLUMN).to_pylist()) != {r["episode_id"]}:
            problems.append(f"episode {r['episode_id']} does not own its rows")
            break
    if problems:
        raise DatasetError(f"compacting into {name}: {'; '.join(problems)}; nothing was committed", "report it")


def updated_info(current: dict[str, Any], merged: list[Merged]) -> dict[str, Any]:
    out = json.loads(json.dumps(current))
    for m in merged:
        out["configs"][m.config]["shards"] -= len(m.replaces) - 1
    return out
