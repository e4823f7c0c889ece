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
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout
from gymrec.shared.errors import DatasetError
from gymrec.uploader.convert import ConvertOptions, RowGroupWriter, frames_options
from gymrec.uploader.frame_blocks import FRAMES_SCHEMA
from gymrec.uploader.index_row import INDEX_FEATURES, parse_attributes, quality_totals, seconds
from gymrec.uploader.published import CONTENT_DIGEST_COLUMN, Listed, legacy_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    config: str
    shard: str
    size: int
    frames: bool = False  # format 3: a frames shard beside the data shard

    @property
    def data_file(self) -> str:
        return layout.data_path(self.config, self.shard)

    @property
    def index_file(self) -> str:
        return layout.index_path(self.config, self.shard)

    @property
    def frames_file(self) -> str:
        return layout.frames_path(self.config, self.shard)

    @property
    def files(self) -> tuple[str, ...]:
        return (self.data_file, self.index_file, *((self.frames_file,) if self.frames else ()))


@dataclass(frozen=True)
class Merged:
    config: str
    shard: str
    replaces: tuple[Shard, ...]
    files: dict[str, Path]  # path in the dataset -> the merged local file
    dropped: tuple[dict[str, Any], ...] = ()  # index rows of identical duplicates left out
    withdrawn: tuple[dict[str, Any], ...] = ()  # index rows of withdrawn episodes left out

    @property
    def deleted(self) -> list[str]:
        return sorted(p for s in self.replaces for p in s.files)


def shards_of(paths: dict[str, int]) -> list[Shard]:
    """The shards whose data and index files are both listed (``paths``: path -> size)."""
    out = []
    for path, size in paths.items():
        parts = path.split("/")
        if path.startswith(layout.DATA_DIR + "/") and len(parts) == 4 and path.endswith(layout.SHARD_SUFFIX):
            config, shard = parts[1], parts[3][: -len(layout.SHARD_SUFFIX)]
            if layout.index_path(config, shard) in paths:
                frames = paths.get(layout.frames_path(config, shard))
                out.append(Shard(config, shard, size + (frames or 0), frames is not None))
    return sorted(out, key=lambda s: (s.config, s.size, s.shard))


def duplicated_shards(listed: dict[str, list[Listed]]) -> set[str]:
    """The index shards of every episode listed more than once (they must be merged together)."""
    return {entry.index_file for entries in listed.values() if len(entries) > 1 for entry in entries}


def plan(shards: list[Shard], target_bytes: int, together: Collection[str] = ()) -> list[tuple[Shard, ...]]:
    """Groups of at least two shards of one config, smallest first, each up to ``target_bytes``.

    The shards whose index file is in ``together`` (those holding a duplicated episode) form one
    group per config first, whatever their size, so the duplicate is left out.
    """
    by_config: dict[str, list[Shard]] = defaultdict(list)
    forced: dict[str, list[Shard]] = defaultdict(list)
    for s in shards:
        if s.index_file in together:
            forced[s.config].append(s)
        elif s.size < target_bytes:
            by_config[s.config].append(s)
    groups: list[tuple[Shard, ...]] = [tuple(forced[c]) for c in sorted(forced) if len(forced[c]) > 1]
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


def usable(group: tuple[Shard, ...], local: dict[str, Path]) -> tuple[tuple[Shard, ...], list[str]]:
    """(the shards of ``group`` that read back, "path (why)" for each that does not): a truncated or
    damaged shard is left as it is, with one warning, and the others are still merged."""
    kept, bad = [], []
    for shard in group:
        try:
            rows = pq.read_table(local[shard.index_file]).num_rows
            data = pq.ParquetFile(local[shard.data_file])
            data.read(columns=[layout.EPISODE_ID_COLUMN, layout.OBS_HASH_COLUMN])
            if shard.frames:
                pq.ParquetFile(local[shard.frames_file]).read(columns=[layout.BLOCK_EPISODE_COLUMN, layout.BLOCK_COUNT_COLUMN])
            if rows == 0 or data.metadata.num_rows == 0:
                raise ValueError("it holds no rows")
            kept.append(shard)
        except (pa.ArrowException, OSError, ValueError) as e:
            bad.append(f"{shard.data_file} ({type(e).__name__}: {' '.join(str(e).split())[:120]})")
            log.info("leaving %s as it is: it does not read back (%s)", shard.data_file, e)  # the CLI says it once
    return tuple(kept), bad


def _hashes(table: pa.Table) -> list[Any]:
    return table.column(layout.OBS_HASH_COLUMN).to_pylist()


def _row_fingerprint(row: dict[str, Any]) -> str:
    """An index row's content, as exactly-once compares it (``uploader.published``)."""
    digest = row.get(CONTENT_DIGEST_COLUMN)
    return str(digest) if digest else legacy_fingerprint(
        row[layout.INDEX_ATTRS_COLUMN], row[layout.INDEX_FINAL_HASH_COLUMN], row[layout.INDEX_ROW_COUNT_COLUMN])


def _kept(index_rows: list[dict[str, Any]], seen: dict[str, str], where: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows to keep, identical duplicates to drop) of one shard's index; another content is refused."""
    keep, drop = [], []
    for row in index_rows:
        eid, content = str(row["episode_id"]), _row_fingerprint(row)
        if eid not in seen:
            seen[eid] = content
            keep.append(row)
        elif seen[eid] == content:
            drop.append(row)
        else:
            raise DatasetError(f"episode {eid} is listed twice with different content ({where}); nothing was committed",
                               "keep the right copy by hand; every other episode is still readable")  # fmt: skip
    return keep, drop


def merge(group: tuple[Shard, ...], local: dict[str, Path], root: Path, options: ConvertOptions,
          leave_out: frozenset[str] = frozenset()) -> Merged:
    """Write the merged data, frames and index shard of ``group`` under ``root`` and verify them.

    An episode listed twice with identical content (published twice by a gymrec before exactly-once
    checked ids) keeps its first copy; its later rows are left out. The episodes in ``leave_out`` (a
    withdrawal, ``uploader.withdraw``) are left out altogether; the new shard's id then names them too,
    so it differs from a compaction's of the same shards. Nothing is written when nothing is left.
    """
    config = group[0].config
    seen: dict[str, str] = {}
    plans = []  # per shard: its kept index rows and the index rows left out
    dropped: list[dict[str, Any]] = []
    withdrawn: list[dict[str, Any]] = []
    for s in sorted(group, key=lambda s: s.shard):
        keep, drop = _kept(pq.read_table(local[s.index_file]).to_pylist(), seen, s.index_file)
        out = [r for r in keep if r["episode_id"] in leave_out]
        keep = [r for r in keep if r["episode_id"] not in leave_out]
        plans.append((s, keep, drop + out))
        dropped += drop
        withdrawn += out
    gone_ids = sorted(f"without {r['episode_id']}" for r in withdrawn)
    new = layout.shard_id([*(s.shard for s in group), *gone_ids])
    if not any(keep for _, keep, _ in plans):
        return Merged(config, new, group, {}, tuple(dropped), tuple(withdrawn))
    data_file, index_file = layout.data_path(config, new), layout.index_path(config, new)
    blocks = all(s.frames for s in group)
    if not blocks and any(s.frames for s in group):
        raise DatasetError(f"{config}: shards of formats 2 and 3 cannot be merged", "run gymrec-uploader compact --to-format 3 first")
    frames_file = layout.frames_path(config, new)
    for rel in (data_file, index_file, frames_file):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
    first = pq.ParquetFile(local[group[0].data_file])
    rows: list[dict[str, Any]] = []
    expected_hashes: list[Any] = []
    # a failed write is not written again
    with RowGroupWriter(root / data_file, first.schema_arrow, options) as writer, \
            RowGroupWriter(root / frames_file, FRAMES_SCHEMA, frames_options(options)) as block_writer:  # fmt: skip
        for s, keep, removed in plans:
            offset = writer.written + writer.rows
            shard = pq.ParquetFile(local[s.data_file])
            if shard.schema_arrow != first.schema_arrow:
                raise DatasetError(f"{s.data_file} has another schema than {group[0].data_file}", "compact it separately")
            gone = _ranges(removed, layout.INDEX_ROW_START_COLUMN, layout.INDEX_ROW_COUNT_COLUMN)
            for batch in _without(shard, gone, 256):
                writer.add(batch)
                expected_hashes += batch.column(layout.OBS_HASH_COLUMN).to_pylist()
            moved = [row | {layout.INDEX_DATA_FILE_COLUMN: data_file, layout.INDEX_ROW_START_COLUMN: offset + start}
                     for row, start in zip(keep, _shifted(keep, gone, layout.INDEX_ROW_START_COLUMN), strict=True)]  # fmt: skip
            if blocks:
                moved = _copy_blocks(local[s.frames_file], keep, removed, block_writer, frames_file, moved)
            rows += moved
    pq.write_table(pa.Table.from_pylist(rows, schema=INDEX_FEATURES.arrow_schema), root / index_file, compression="zstd")
    _verify(root / data_file, root / index_file, rows, expected_hashes, data_file)
    files = {data_file: root / data_file, index_file: root / index_file}
    if blocks:
        verify_blocks(root / frames_file, rows, frames_file)
        files[frames_file] = root / frames_file
    if dropped:
        log.warning("%s: left out %d duplicate row(s) of %s", config, len(dropped), ", ".join(sorted({r["episode_id"] for r in dropped})))
    return Merged(config, new, group, files, tuple(dropped), tuple(withdrawn))


def _ranges(rows: list[dict[str, Any]], start: str, count: str) -> list[tuple[int, int]]:
    return sorted((int(r[start]), int(r[count])) for r in rows)


def _shifted(keep: list[dict[str, Any]], gone: list[tuple[int, int]], column: str) -> list[int]:
    """Each kept row's start, less the rows left out ahead of it in its shard."""
    return [int(r[column]) - sum(n for a, n in gone if a < int(r[column])) for r in keep]


def _without(shard: pq.ParquetFile, gone: list[tuple[int, int]], size: int) -> Iterator[pa.RecordBatch]:
    """A shard's rows in batches, less the (start, count) ranges ``gone``."""
    position = 0
    for batch in shard.iter_batches(batch_size=size):
        if gone:
            mask = [not any(a <= position + i < a + n for a, n in gone) for i in range(batch.num_rows)]
            position += batch.num_rows
            batch = batch.filter(pa.array(mask))
        yield batch


def _copy_blocks(source: Path, keep: list[dict[str, Any]], removed: list[dict[str, Any]], writer: RowGroupWriter,
                 frames_file: str, moved: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """Copy a shard's block rows (not those of ``removed``) and point ``moved`` at them in ``frames_file``."""
    offset = writer.written + writer.rows
    gone = _ranges(removed, layout.INDEX_FRAMES_ROW_START_COLUMN, layout.INDEX_FRAMES_ROW_COUNT_COLUMN)
    for batch in _without(pq.ParquetFile(source), gone, 64):
        writer.add(batch)
    starts = _shifted(keep, gone, layout.INDEX_FRAMES_ROW_START_COLUMN)
    return [row | {layout.INDEX_FRAMES_FILE_COLUMN: frames_file, layout.INDEX_FRAMES_ROW_START_COLUMN: offset + start}
            for row, start in zip(moved, starts, strict=True)]  # fmt: skip


def verify_blocks(frames: Path, rows: list[dict[str, Any]], name: str) -> None:
    """Every episode owns its block rows: its id, blocks 0..n-1 in order, and length + 1 frames in all."""
    table = pq.read_table(frames, columns=[layout.BLOCK_EPISODE_COLUMN, layout.BLOCK_INDEX_COLUMN, layout.BLOCK_COUNT_COLUMN])
    for r in rows:
        part = table.slice(int(r[layout.INDEX_FRAMES_ROW_START_COLUMN]), int(r[layout.INDEX_FRAMES_ROW_COUNT_COLUMN])).to_pydict()
        if (set(part[layout.BLOCK_EPISODE_COLUMN]) != {r["episode_id"]}
                or part[layout.BLOCK_INDEX_COLUMN] != list(range(int(r[layout.INDEX_FRAMES_ROW_COUNT_COLUMN])))
                or sum(part[layout.BLOCK_COUNT_COLUMN]) != int(r[layout.INDEX_ROW_COUNT_COLUMN]) + 1):  # fmt: skip
            raise DatasetError(f"writing {name}: episode {r['episode_id']} does not own its frame blocks; nothing was "
                               "committed", "report it")  # fmt: skip


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
    """``current`` less what ``merged`` left out; a config left with no episode is dropped."""
    out = json.loads(json.dumps(current))
    for m in merged:
        entry = out["configs"][m.config]
        entry["shards"] -= len(m.replaces) - (1 if m.files else 0)
        gone = [*m.dropped, *m.withdrawn]
        entry["episodes"] -= len(gone)
        entry["steps"] -= sum(int(r["length"]) for r in gone)
        attrs = [parse_attributes(r[layout.INDEX_ATTRS_COLUMN], m.config)[0] for r in gone]
        entry["seconds"] = round(entry["seconds"] - sum(seconds(a, int(r["length"])) for a, r in zip(attrs, gone, strict=True)), 6)
        if gone and "quality" in entry:  # the sums lose those episodes; a maximum stays an upper bound
            less = quality_totals(attrs)
            entry["quality"] = {k: v if k.endswith("_max") else _minus(v, less.get(k, 0)) for k, v in entry["quality"].items()}
    for config in {m.config for m in merged}:
        if out["configs"][config]["episodes"] <= 0:
            del out["configs"][config]
    return out


def _minus(a: float, b: float) -> float:
    return round(a - b, 6) if isinstance(a, float) or isinstance(b, float) else a - b
