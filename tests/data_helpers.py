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

