"""Never touch what isn't ours: whose target is it, and rebuilding a lost ``meta/info.json``.

A target (a ``--local-dir`` or a Hub repo) is gymrec's when its ``meta/info.json`` says so. Without
one it is:

- empty (nothing but our own lock, staging folder or the Hub's ``.gitattributes``): a new dataset;
- a gymrec dataset that lost its info.json (its index shards are there): info.json is rebuilt from
  every index shard of the target (and one data shard's schema per config), never from the batch;
- anything else: someone else's files, refused in one line unless ``--force-adopt`` takes it over.
  Adopting deletes nothing, and a README.md that was there stays theirs: the card is then not
  written (``info["readme"] = "kept"``).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout
from gymrec.shared.errors import DatasetError
from gymrec.uploader import index_row, info
from gymrec.uploader.shards import Batch, ConfigPart

log = logging.getLogger(__name__)

EMPTY, LOST_INFO, FOREIGN = "empty", "lost-info", "foreign"
OUR_TOP_LEVEL = frozenset({".gymrec.lock", ".staging", ".gitattributes"})
README_KEPT = "kept"


def state_without_info(paths: Iterable[str]) -> str:
    """What a target without a usable gymrec info.json holds: EMPTY, LOST_INFO or FOREIGN."""
    listed = [p for p in paths if p.split("/")[0] not in OUR_TOP_LEVEL and not p.startswith(f"{layout.META_DIR}/.")]
    if any(layout.is_index_path(p) for p in listed):
        return LOST_INFO
    return FOREIGN if listed else EMPTY


def is_gymrec_info(found: dict[str, Any]) -> bool:
    return found.get("codebase") == "gymrec" and isinstance(found.get("configs"), dict)


def refuse_foreign(where: str, flag: str) -> DatasetError:
    return DatasetError(f"{where} holds files but no gymrec dataset (no gymrec {layout.INFO_PATH}); gymrec will not "
                        f"write into someone else's dataset",
                        f"pass another {flag}, or --force-adopt to add gymrec's files beside them (nothing is deleted)")  # fmt: skip


def adopted(paths: Iterable[str]) -> dict[str, Any]:
    """The info.json a forced adoption starts from: the card stays the owner's when there is one."""
    out = info.empty()
    if layout.CARD_PATH in set(paths):
        out["readme"] = README_KEPT
    return out


def writes_card(current: dict[str, Any]) -> bool:
    return current.get("readme") != README_KEPT


def rebuild(paths: Iterable[str], read: Callable[[str], bytes], data_schema: Callable[[str], pa.Schema]) -> dict[str, Any]:
    """info.json rebuilt from every index shard in ``paths`` (``read``: path -> bytes) and, per config,
    one data shard's schema (its ``datasets`` features): the totals of what the target holds."""
    by_config: dict[str, list[tuple[str, list[dict[str, Any]]]]] = defaultdict(list)
    for path in sorted(p for p in paths if layout.is_index_path(p)):
        rows = pq.read_table(io.BytesIO(read(path))).to_pylist()
        if rows:
            by_config[path.split("/")[2]].append((path, rows))
    out = info.empty()
    for config, shards in sorted(by_config.items()):
        features = datasets.Features.from_arrow_schema(data_schema(shards[0][1][0][layout.INDEX_DATA_FILE_COLUMN])).to_dict()
        for path, rows in shards:
            out = info.merge(out, Batch("", (), {}, {config: _part(config, path, rows, features)}))
    if any(row.get(layout.INDEX_FRAMES_FILE_COLUMN) is None for shards in by_config.values() for _, rows in shards for row in rows):
        out["format_version"] = 2  # frames still in the step rows: the uploader refuses it until converted
    log.warning("rebuilt %s from %d index shard(s)", layout.INFO_PATH, sum(len(s) for s in by_config.values()))
    return out


def _part(config: str, index_file: str, rows: list[dict[str, Any]], features: dict[str, Any]) -> ConfigPart:
    parsed = [index_row.parse_attributes(r[layout.INDEX_ATTRS_COLUMN], index_file) for r in rows]
    episodes = [attrs for attrs, _ in parsed]
    lengths = [int(r[layout.INDEX_ROW_COUNT_COLUMN]) for r in rows]
    return ConfigPart(
        config=config, data_file=str(rows[0][layout.INDEX_DATA_FILE_COLUMN]), index_file=index_file,
        frames_file=str(rows[0].get(layout.INDEX_FRAMES_FILE_COLUMN) or ""),
        episodes=len(rows), steps=sum(lengths),
        seconds=sum(index_row.seconds(a, n) for a, n in zip(episodes, lengths, strict=True)),
        env_ids=tuple(sorted({a.env_id for a in episodes})), backends=tuple(sorted({a.backend for a in episodes})),
        sample=parsed[0][0], derived=parsed[0][1], features=features, preview_png=b"",
        quality=index_row.quality_totals(episodes),
    )  # fmt: skip
