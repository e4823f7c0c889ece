"""The plan of a run: every episode's seed and id, a pure function of (run seed, run name, index).

Nothing here depends on the cluster: its size, its shape and whatever fails during the run change
who records an episode, never which episodes exist. A re-recording after a fault has the same seed
and the same id as the first attempt, so the uploader's exactly-once per id (uploader.published)
sees one episode however many attempts it took; the same ``--run`` and ``--seed`` plan the same run
again (a resumed run re-records only what its nodes do not hold sealed).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import numpy as np

SEED_SPACE = 2**31 - 1
# The namespace of planned episode ids (uuid5): fixed forever, or a re-planned run gets other ids.
PLAN_NAMESPACE = uuid.UUID("6f1c1d3e-6a58-4a8e-9a39-2c0f5b1e7d10")


@dataclass(frozen=True)
class PlannedEpisode:
    run: str
    index: int
    seed: int
    episode_id: str


def _run_key(run: str) -> int:
    """A stable integer for the run name (Python's ``hash`` of a str changes between processes)."""
    return int.from_bytes(hashlib.sha256(run.encode()).digest()[:8], "big")


def run_seed(run: str, seed: int | None) -> int:
    """``--seed``, or, without one, a seed derived from the run name: ``--run NAME`` alone replans the run."""
    return seed if seed is not None else _run_key(run) % SEED_SPACE


def planned_episode(seed: int, run: str, index: int) -> PlannedEpisode:
    """Episode ``index`` of run ``run`` with run seed ``seed``: independent of every other index."""
    sequence = np.random.SeedSequence(entropy=seed, spawn_key=(_run_key(run), index))
    episode_seed = int(sequence.generate_state(1)[0]) % SEED_SPACE
    episode_id = str(uuid.uuid5(PLAN_NAMESPACE, f"{seed}/{run}/{index}"))
    return PlannedEpisode(run, index, episode_seed, episode_id)


def plan_run(seed: int, run: str, episodes: int) -> list[PlannedEpisode]:
    return [planned_episode(seed, run, i) for i in range(episodes)]


def default_run_name(env_id: str, now: float | None = None) -> str:
    """A fresh name for a run given no ``--run``: the env and the UTC second it was planned."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{env_id.replace('/', '-')}-{stamp}"
