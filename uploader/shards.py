"""An upload batch -> one data shard and one index shard per env config (``shared.layout``, format 2).

Each episode was converted to its own parquet first (so a corrupt episode fails alone, before it
touches a shard); here those row groups are copied, not re-encoded, into the config's data shard,
and one index row per episode records where its rows are. The batch id, and so every path, is
deterministic in the batch's episode ids: a retried or adopted batch writes the same files again.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared import layout
from gymrec.shared.attrs import pairing_of
from gymrec.shared.schema import PAIRING_LAGGED
from gymrec.uploader.convert import Converted, ConvertOptions, RowGroupWriter

log = logging.getLogger(__name__)

# The index columns beside the recorded attributes' JSON: what a reader filters or shows without parsing it.
INDEX_FEATURES = datasets.Features({
    "episode_id": datasets.Value("string"),
    layout.INDEX_CONFIG_COLUMN: datasets.Value("string"),
    "env_id": datasets.Value("string"),
    "seed": datasets.Value("int64"),
    "length": datasets.Value("int64"),
    "return": datasets.Value("float64"),
    "end_reason": datasets.Value("string"),
    "player": datasets.Value("string"),
    "collector": datasets.Value("string"),
    "fps": datasets.Value("float64"),
    "versions": datasets.Value("string"),  # JSON
    "action_space": datasets.Value("string"),  # JSON
    "observation_space": datasets.Value("string"),  # JSON
    "keymap": datasets.Value("string"),  # JSON
    "action_meanings": datasets.List(datasets.Value("string")),
    # Human play (null for agents and older episodes): EpisodeAttrs' quality fields and the raw input log.
    "active_fraction": datasets.Value("float64"),
    "inputs_per_minute": datasets.Value("float64"),
    "longest_idle_s": datasets.Value("float64"),
    "paused_s": datasets.Value("float64"),
    "late_frames": datasets.Value("int64"),
    "worst_late_ms": datasets.Value("float64"),
    "input_log": datasets.Value("string"),  # JSON
    # Lineage (null when the episode is neither a branch, a branched parent, nor a takeover).
    "parent_episode_id": datasets.Value("string"),
    "branch_step": datasets.Value("int64"),
    "branched_at": datasets.Value("int64"),
    "takeover": datasets.Value("bool"),
    # schema.PAIRING_*: "lagged" marks human play recorded before gymrec 0.2 (action t answers observation t-1).
    "pairing": datasets.Value("string"),
    layout.INDEX_DATA_FILE_COLUMN: datasets.Value("string"),
    layout.INDEX_ROW_START_COLUMN: datasets.Value("int64"),
    layout.INDEX_ROW_COUNT_COLUMN: datasets.Value("int64"),
    layout.INDEX_FINAL_COLUMN: datasets.Image(),
    layout.INDEX_FINAL_HASH_COLUMN: datasets.Value("uint64"),
    layout.INDEX_FINAL_EXTRA_COLUMN: datasets.Value("string"),  # JSON
    layout.INDEX_ATTRS_COLUMN: datasets.Value("string"),  # JSON: every recorded attribute
})  # fmt: skip


@dataclass(frozen=True)
class ConfigPart:
    """What one batch adds to one config: its two shard files and the totals they carry."""

    config: str
    data_file: str
    index_file: str
    episodes: int
    steps: int
    seconds: float
    env_ids: tuple[str, ...]
    backends: tuple[str, ...]
    sample: dict[str, Any]  # one episode's meta: spaces, image key, format, info columns
    features: dict[str, Any]  # the data shard's datasets features, as ``Features.to_dict()``
    preview_png: bytes
    quality: dict[str, Any] = field(default_factory=dict)  # ``quality_totals`` of the part's episodes


@dataclass(frozen=True)
class Batch:
    batch_id: str
    episode_ids: tuple[str, ...]
    files: dict[str, Path]  # path in the dataset -> the local file to add
    parts: dict[str, ConfigPart] = field(default_factory=dict)

    @property
    def shard_paths(self) -> list[str]:
        """The batch's data and index shards: all of them at a head means the batch is there."""
        return sorted(self.files)


def batch_id(episode_ids: list[str]) -> str:
    return layout.shard_id(episode_ids)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


def _meanings(meta: dict[str, Any]) -> list[str] | None:
    value = meta.get("action_meanings")
    return [str(v) for v in value] if isinstance(value, list) else None


QUALITY_FIELDS = ("active_fraction", "inputs_per_minute", "longest_idle_s", "paused_s", "late_frames", "worst_late_ms")
LINEAGE_FIELDS = ("parent_episode_id", "branch_step", "branched_at", "takeover")


def _typed(value: Any, kind: type) -> Any:
    """``value`` as the column's type, or None (absent, or a value of another type in a damaged attribute)."""
    if value is None or isinstance(value, bool) != (kind is bool):
        return None
    if kind is float:
        return float(value) if isinstance(value, int | float) else None
    return value if isinstance(value, kind) else None


def _human_fields(m: dict[str, Any]) -> dict[str, Any]:
    kinds: dict[str, type] = {"late_frames": int, "parent_episode_id": str, "branch_step": int,
                              "branched_at": int, "takeover": bool}  # fmt: skip
    out = {name: _typed(m.get(name), kinds.get(name, float)) for name in QUALITY_FIELDS + LINEAGE_FIELDS}
    log_value = m.get("input_log")
    out["input_log"] = _json(log_value) if log_value is not None else None
    out["pairing"] = pairing_of(m)
    return out


def quality_totals(metas: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-config aggregate of the quality and lineage fields that ``meta/info.json`` keeps (summable)."""
    human = [_human_fields(m) for m in metas]
    rated = [h for h in human if h["active_fraction"] is not None]
    return {
        "rated_episodes": len(rated),
        "active_fraction_sum": round(sum(h["active_fraction"] for h in rated), 6),
        "inputs_per_minute_sum": round(sum(h["inputs_per_minute"] or 0.0 for h in rated), 6),
        "longest_idle_s_max": max((h["longest_idle_s"] or 0.0 for h in rated), default=0.0),
        "paused_s_sum": round(sum(h["paused_s"] or 0.0 for h in rated), 6),
        "late_frames_sum": sum(h["late_frames"] or 0 for h in rated),
        "worst_late_ms_max": max((h["worst_late_ms"] or 0.0 for h in rated), default=0.0),
        "branch_episodes": sum(1 for h in human if h["parent_episode_id"] is not None),
        "takeover_episodes": sum(1 for h in human if h["takeover"]),
        "lagged_episodes": sum(1 for h in human if h["pairing"] == PAIRING_LAGGED),
    }


def add_quality(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    return {key: (max if key.endswith("_max") else _add)(total.get(key, 0), value) for key, value in part.items()}


def _add(a: float, b: float) -> float:
    return round(a + b, 6) if isinstance(a, float) or isinstance(b, float) else a + b


def _index_row(c: Converted, data_file: str, row_start: int) -> dict[str, Any]:
    m = c.meta
    seed = m.get("seed")
    return {
        "episode_id": c.episode_id, layout.INDEX_CONFIG_COLUMN: c.slug, "env_id": c.env_id,
        "seed": int(seed) if isinstance(seed, int) else None, "length": c.length,
        "return": float(m.get("return", m.get("episode_return", 0.0)) or 0.0),
        "end_reason": str(m.get("end_reason", "")), "player": str(m.get("player", "")),
        "collector": str(m.get("collector", "")), "fps": float(m.get("fps", 0.0) or 0.0),
        "versions": _json(m.get("versions", {})), "action_space": _json(m["action_space"]),
        "observation_space": _json(m["observation_space"]), "keymap": _json(m.get("keymap")),
        "action_meanings": _meanings(m), layout.INDEX_DATA_FILE_COLUMN: data_file,
        layout.INDEX_ROW_START_COLUMN: row_start, layout.INDEX_ROW_COUNT_COLUMN: c.length,
        layout.INDEX_FINAL_COLUMN: {"bytes": c.final_png, "path": None},
        layout.INDEX_FINAL_HASH_COLUMN: c.final_hash, layout.INDEX_FINAL_EXTRA_COLUMN: _json(c.final_extra),
        layout.INDEX_ATTRS_COLUMN: _json(m), **_human_fields(m),
    }  # fmt: skip


def write_index(rows: list[dict[str, Any]], path: Path) -> None:
    table = pa.Table.from_pylist(rows, schema=INDEX_FEATURES.arrow_schema)
    pq.write_table(table, path, compression="zstd")


def _seconds(c: Converted) -> float:
    fps = float(c.meta.get("fps", 0.0) or 0.0)
    return c.length / fps if fps > 0 else 0.0


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
        for rel in (data_file, index_file):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
        schema = group[0].features.arrow_schema
        writer = RowGroupWriter(root / data_file, schema, options)
        rows: list[dict[str, Any]] = []
        try:
            for c in group:
                if c.features.arrow_schema != schema:  # a config's episodes share one schema (info keys, leaves)
                    raise ValueError(f"{c.episode_id} does not share the schema of config {config}")
                start = writer.written + writer.rows
                for table_batch in pq.ParquetFile(c.rows_file).iter_batches(batch_size=256):
                    writer.add(table_batch)
                rows.append(_index_row(c, data_file, start))
        finally:
            writer.close()
        write_index(rows, root / index_file)
        files[data_file], files[index_file] = root / data_file, root / index_file
        parts[config] = ConfigPart(
            config=config, data_file=data_file, index_file=index_file, episodes=len(group),
            steps=sum(c.length for c in group), seconds=sum(_seconds(c) for c in group),
            env_ids=tuple(sorted({c.env_id for c in group})),
            backends=tuple(sorted({str(c.meta.get("backend", "")) for c in group})),
            sample=group[0].meta, features=group[0].features.to_dict(), preview_png=group[0].preview_png,
            quality=quality_totals([c.meta for c in group]),
        )  # fmt: skip
    log.info("batch %s: %d episodes in %d configs", bid[:8], len(ids), len(parts))
    return Batch(bid, tuple(sorted(ids)), files, parts)
