"""The small world the training reader's tests read: a spool of two Breakout games and its local dataset."""

from __future__ import annotations

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


def format2_copy(world: DataWorld, out: Path) -> Path:
    """The world's dataset as format 2 wrote it (every frame a lossless WebP in the step rows, no frames/):
    a fixture for the format-2 reader, since this gymrec's uploader writes format 3 only."""
    import io
    import json
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    from gymrec.shared.dataset import layout
    from gymrec.shared.spool.episode import Episode

    shutil.copytree(world.dataset, out, ignore=shutil.ignore_patterns(layout.FRAMES_DIR, ".*"))
    frames = {Episode(p).id: Episode(p).obs("frame", 0, Episode(p).length) for p in world.episodes}
    for shard in (out / layout.DATA_DIR).rglob("*" + layout.SHARD_SUFFIX):
        table = pq.read_table(shard)
        images = []
        for eid, step in zip(table.column("episode_id").to_pylist(), table.column("step").to_pylist(), strict=True):
            buf = io.BytesIO()
            Image.fromarray(frames[eid][step]).save(buf, "WEBP", lossless=True, exact=True)
            images.append({"bytes": buf.getvalue(), "path": None})
        table = table.drop_columns([layout.PREVIEW_COLUMN]).append_column(layout.OBS_COLUMN, pa.array(images))
        pq.write_table(table, shard)
    info = json.loads((out / layout.INFO_PATH).read_text())
    (out / layout.INFO_PATH).write_text(json.dumps(info | {"format_version": 2}))
    return out
