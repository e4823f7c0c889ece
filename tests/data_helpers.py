"""The small world the training reader's tests read: a spool of two Breakout games and its local dataset."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.uploader_helpers import local_files, record_episode, to_dataset

ENV_ID = "BreakoutNoFrameskip-v4"
CONFIG = "breakoutnoframeskip-v4"
STEPS = 150


@dataclass(frozen=True)
class DataWorld:
    spool: Path
    dataset: Path
    episodes: tuple[Path, ...]  # the spool's sealed episodes, in id order


def build_world(root: Path) -> DataWorld:
    spool = root / "spool"
    episodes = sorted((record_episode(spool, ENV_ID, STEPS, seed) for seed in (1, 2)), key=lambda p: p.name)
    return DataWorld(spool, to_dataset(episodes, root / "dataset"), tuple(episodes))


def seed_hub(hub: object, world: DataWorld, repo_id: str) -> None:
    """The local dataset as a Hub repo of the suite's server (its files committed as they are)."""
    hub.seed_repo(repo_id, local_files(world.dataset))  # type: ignore[attr-defined]


def format2_copy(dataset: Path, episodes: Sequence[Path], out: Path) -> Path:
    """A format-3 ``dataset`` of the spool ``episodes`` as format 2 wrote it (every frame a lossless WebP in the step rows, no frames/):
    a fixture for the format-2 reader, since this gymrec's uploader writes format 3 only."""
    import io
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from gymrec.shared.dataset import layout
    from gymrec.shared.spool.episode import Episode

    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])  # a datasets Image cell
    shutil.copytree(dataset, out, ignore=shutil.ignore_patterns(layout.FRAMES_DIR, ".*"))
    opened = [Episode(p) for p in episodes]
    frames = {e.id: e.obs(e.attrs.image_key, 0, e.length) for e in opened}
    for shard in (out / layout.DATA_DIR).rglob("*" + layout.SHARD_SUFFIX):
        table = pq.read_table(shard)
        images = []
        for eid, step in zip(table.column("episode_id").to_pylist(), table.column("step").to_pylist(), strict=True):
            buf = io.BytesIO()
            frame = frames[eid][step]
            if frame.ndim == 3 and frame.shape[2] in (3, 4):
                Image.fromarray(frame).save(buf, "WEBP", lossless=True, exact=True)
            else:  # grayscale: format 2 kept it as PNG
                Image.fromarray(frame.reshape(frame.shape[:2])).save(buf, "PNG")
            images.append({"bytes": buf.getvalue(), "path": None})
        at = table.column_names.index(layout.PREVIEW_COLUMN)
        table = table.drop_columns([layout.PREVIEW_COLUMN]).add_column(at, layout.OBS_COLUMN, pa.array(images, image_type))
        # datasets reads the features from the schema metadata: the preview Image becomes the observation Image
        meta = json.loads(table.schema.metadata[b"huggingface"])
        meta["info"]["features"] = {layout.OBS_COLUMN if k == layout.PREVIEW_COLUMN else k: v
                                    for k, v in meta["info"]["features"].items()}  # fmt: skip
        pq.write_table(table.replace_schema_metadata({b"huggingface": json.dumps(meta).encode()}), shard)
    info = json.loads((out / layout.INFO_PATH).read_text())
    (out / layout.INFO_PATH).write_text(json.dumps(info | {"format_version": 2}))
    return out
