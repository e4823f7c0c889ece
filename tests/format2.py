"""Test fixtures for dataset formats: publish a spool episode in-process, and rewrite a format-3 dataset as
the format 2 an earlier gymrec wrote (every frame a lossless WebP/PNG in the step rows, no frames/)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.frames import FrameStore
from gymrec.shared.dataset.index import DatasetIndex
from gymrec.shared.dataset.reader import LocalFiles
from gymrec.shared.spool.episode import Episode
from gymrec.uploader.convert import ConvertOptions, convert_episode, encode_frame
from gymrec.uploader.local import LocalWriter
from gymrec.uploader.shards import build_batch

FORMAT3_INDEX_COLUMNS = (layout.INDEX_FRAMES_FILE_COLUMN, layout.INDEX_FRAMES_ROW_START_COLUMN,
                         layout.INDEX_FRAMES_ROW_COUNT_COLUMN, layout.INDEX_FRAME_SHAPE_COLUMN)  # fmt: skip


def publish(sealed: list[Path], dataset: Path, work: Path) -> None:
    """The uploader's conversion and local write of ``sealed`` episodes, in one batch, in this process."""
    options = ConvertOptions(workers=2)
    converted = [convert_episode(Episode(path), work / "episodes", options) for path in sealed]
    dataset.mkdir(parents=True, exist_ok=True)
    LocalWriter(dataset).add(build_batch(converted, work / "batch", options))


def _v2_features(features: dict[str, object]) -> dict[str, object]:
    return {(layout.OBS_COLUMN if k == layout.PREVIEW_COLUMN else k): v for k, v in features.items()}


def downgrade(source: Path, target: Path) -> None:
    """Write ``source`` (format 3) to ``target`` as format 2: the same episodes, hashes and index rows."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(layout.FRAMES_DIR, ".gymrec.lock", ".staging"))
    index = DatasetIndex(LocalFiles(source))
    fmt: dict[str, str] = {}
    with FrameStore(index) as store:
        frames = {eid: store.episode(eid).read(0, index.entries[eid].row_count + 1) for eid in index.episode_ids()}
    for eid in index.episode_ids():
        fmt[eid] = json.loads(index.row(eid)[layout.INDEX_ATTRS_COLUMN])["observation_format"]
    for path in sorted((target / layout.DATA_DIR).rglob("*" + layout.SHARD_SUFFIX)):
        table = pq.read_table(path)
        images = [encode_frame(frames[e][s].reshape(frames[e][s].shape[:2]) if fmt[e] == "png" else frames[e][s],
                               fmt[e], ConvertOptions())
                  for e, s in zip(table.column("episode_id").to_pylist(), table.column("step").to_pylist(), strict=True)]  # fmt: skip
        features = datasets.Features(_v2_features(datasets.Features.from_arrow_schema(table.schema)))
        column = pa.StructArray.from_arrays([pa.array(images, pa.binary()), pa.nulls(len(images), pa.string())], names=["bytes", "path"])
        columns = {name: table.column(name) for name in table.column_names if name != layout.PREVIEW_COLUMN}
        columns[layout.OBS_COLUMN] = column
        schema = features.arrow_schema
        pq.write_table(pa.Table.from_pydict({f.name: columns[f.name] for f in schema}, schema=schema), path,
                       row_group_size=layout.ROW_GROUP_ROWS)  # fmt: skip
    for path in sorted((target / layout.INDEX_DIR).rglob("*" + layout.SHARD_SUFFIX)):
        table = pq.read_table(path)
        pq.write_table(table.drop_columns(list(FORMAT3_INDEX_COLUMNS)), path)
    info_path = target / layout.INFO_PATH
    info = json.loads(info_path.read_text())
    info["format_version"] = 2
    for entry in info["configs"].values():
        entry.pop("frames_files", None)
        entry["features"] = _v2_features(entry["features"])
    info_path.write_text(json.dumps(info, indent=1))
