"""``meta/info.json``: the dataset's small aggregate (format version, totals per config, features).

It is read at the parent commit, merged with one batch and written in the same commit as the batch's
shards, so the totals can never drift from the data; a conflicting commit re-reads and re-merges.
Its size is O(configs), so the card rendered from it costs the same at 10 or 10 million episodes.
"""

from __future__ import annotations

import json
from typing import Any

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES
from gymrec.shared.errors import DatasetError
from gymrec.uploader.index_row import INDEX_FEATURES, add_quality
from gymrec.uploader.shards import Batch, ConfigPart


def check(info: dict[str, Any] | None, where: str, v1_files: bool = False, writing: bool = True) -> None:
    """Refuse a target this gymrec cannot extend (``writing``) or read; a format-2 one is told to convert."""
    problem = layout.version_problem(info, where, v1_files, writing)
    if problem is not None:
        raise DatasetError(problem, "use a new --repo-id / --local-dir, or the gymrec version that wrote it")


def empty() -> dict[str, Any]:
    return {
        "format_version": layout.FORMAT_VERSION,
        "codebase": "gymrec",
        "shard_settings": {
            "row_group_rows": layout.ROW_GROUP_ROWS,
            "row_group_bytes": layout.ROW_GROUP_BYTES,
            "data_files": f"{layout.DATA_DIR}/<config>/<ss>/<shard>{layout.SHARD_SUFFIX}",
            "index_files": f"{layout.INDEX_DIR}/<config>/<ss>/<shard>{layout.SHARD_SUFFIX}",
            "frames_files": f"{layout.FRAMES_DIR}/<config>/<ss>/<shard>{layout.SHARD_SUFFIX}",
            "block_frames": BLOCK_FRAMES,
            "frames_row_group_blocks": layout.FRAMES_ROW_GROUP_BLOCKS,
        },
        "index_features": INDEX_FEATURES.to_dict(),
        "configs": {},
    }


def _new_config(part: ConfigPart) -> dict[str, Any]:
    sample, derived = part.sample, part.derived
    leaves = sample.observation_space.get("spaces", {})
    return {
        "env_ids": [], "backends": [], "episodes": 0, "steps": 0, "seconds": 0.0, "shards": 0,
        "data_files": layout.data_glob(part.config), "index_files": layout.index_glob(part.config),
        "frames_files": layout.frames_glob(part.config),
        "features": part.features, "action_space": sample.action_space,
        "observation_space": sample.observation_space, "image_key": sample.image_key,
        "observation_format": derived.observation_format,
        "extra_leaves": [k for k in leaves if k != sample.image_key],
        "info_keys": sorted(k[len(layout.INFO_PREFIX):] for k in derived.info_columns),
        "action_meanings": list(sample.action_meanings) if sample.action_meanings is not None else None,
    }  # fmt: skip


def merge(info: dict[str, Any] | None, batch: Batch) -> dict[str, Any]:
    """``info`` (None: a new dataset) with ``batch`` added; ``info`` itself is not changed."""
    out = json.loads(json.dumps(info)) if info is not None else empty()
    out["index_features"] = INDEX_FEATURES.to_dict()  # this batch's index shards carry the current columns
    for config, part in batch.parts.items():
        entry = out["configs"].setdefault(config, _new_config(part))
        entry["env_ids"] = sorted(set(entry["env_ids"]) | set(part.env_ids))
        entry["backends"] = sorted(set(entry["backends"]) | set(part.backends))
        entry["episodes"] += part.episodes
        entry["steps"] += part.steps
        entry["seconds"] = round(entry["seconds"] + part.seconds, 6)
        entry["shards"] += 1
        entry["quality"] = add_quality(entry.get("quality", {}), part.quality)  # absent in info.json written before it
    out["configs"] = dict(sorted(out["configs"].items()))
    return out


def new_configs(info: dict[str, Any] | None, batch: Batch) -> list[str]:
    """Configs the batch brings for the first time (their preview image goes into the same commit)."""
    known = set((info or {}).get("configs", {}))
    return [c for c in batch.parts if c not in known]


def dumps(info: dict[str, Any]) -> bytes:
    return (json.dumps(info, indent=1, sort_keys=False, allow_nan=False) + "\n").encode()
