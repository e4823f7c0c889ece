"""Where a recorded episode comes from, behind one interface: the spool, a local dataset or the Hub.

Verification reads everything it needs per step in bulk and up front (actions, rewards, flags and
one 64-bit hash per observation leaf): a few bytes a step. Full observations are fetched only on a
mismatch (for the diff), for ``--check-frames`` and for ``--render``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared import schema
from gymrec.shared.attrs import EpisodeAttrs
from gymrec.shared.episode import Episode
from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.schema import EndReason
from gymrec.shared.spaces import ACTION_LEAF, Leaf, decode_action, obs_leaves
from gymrec.shared.spool import SEALED_AREAS, find_episode, sealed_episodes


@dataclass(frozen=True)
class RecordedSteps:
    """Everything compared per step, as plain Python lists so the hot loop only indexes."""

    actions: list[Any]
    reward: list[float]
    terminated: list[bool]
    truncated: list[bool]
    obs_hashes: dict[str, list[int]]  # leaf -> T+1 hashes; row T is the final observation


class EpisodeSource(abc.ABC):
    """One recorded episode, wherever it is stored."""

    attrs: EpisodeAttrs
    where: str  # what a user would pass to name it again (a path, or repo:id)

    @property
    def id(self) -> str:
        return self.attrs.episode_id

    @property
    def env_id(self) -> str:
        return self.attrs.env_id

    @property
    def length(self) -> int:
        return int(self.attrs.length or 0)

    @property
    def end_reason(self) -> str:
        return self.attrs.end_reason or ""

    @property
    def obs_leaves(self) -> list[Leaf]:
        return obs_leaves(self.attrs.observation_space)

    @abc.abstractmethod
    def steps(self) -> RecordedSteps:
        """Per-step records of the whole episode, read in bulk."""

    @abc.abstractmethod
    def observation(self, t: int) -> dict[str, np.ndarray]:
        """The full recorded observation at step ``t`` (``t == length``: the final one)."""

    @abc.abstractmethod
    def observations(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        """Every recorded observation, 0..length inclusive, in order, read in chunks."""

    def check_rows(self, name: str, rows: list[Any], expected: int) -> None:
        if len(rows) != expected:
            raise CorruptEpisodeError(
                f"{self.where}: {name} has {len(rows)} rows, expected {expected}", "the episode is truncated or damaged"
            )


class SpoolSource(EpisodeSource):
    """A sealed ``<id>.zarr`` episode, read through ``shared.episode.Episode``."""

    def __init__(self, path: Path) -> None:
        self.episode = Episode(path)
        self.episode.require_steps()
        self.episode.verify_checksums()  # frames are compared by hash only: prove the stored ones intact
        self.attrs = self.episode.attrs
        self.where = str(path)
        self.chunk = self.attrs.chunk_steps

    def _rows(self, name: str, count: int, dtype: np.dtype, shape: tuple[int, ...] = ()) -> np.ndarray:
        return self.episode.rows(name, count, dtype, shape)

    def steps(self) -> RecordedSteps:
        ep = self.episode
        desc = self.attrs.action_space
        leaves = {
            leaf.name: self._rows(schema.action_path(leaf.name), ep.length, leaf.dtype, leaf.shape)
            for leaf in ep.action_leaves
        }
        if desc["type"] == "Discrete":
            actions: list[Any] = leaves[ACTION_LEAF].tolist()  # exactly decode_action's int, without a call a step
        else:
            actions = [decode_action(desc, {k: v[t] for k, v in leaves.items()}) for t in range(ep.length)]
        return RecordedSteps(
            actions=actions,
            reward=self._rows(schema.REWARD, ep.length, np.dtype(np.float64)).tolist(),
            terminated=self._rows(schema.TERMINATED, ep.length, np.dtype(np.bool_)).tolist(),
            truncated=self._rows(schema.TRUNCATED, ep.length, np.dtype(np.bool_)).tolist(),
            obs_hashes={
                leaf.name: self._rows(schema.hash_path(leaf.name), ep.length + 1, np.dtype(np.uint64)).tolist()
                for leaf in self.obs_leaves
            },
        )

    def observation(self, t: int) -> dict[str, np.ndarray]:
        return {leaf.name: self.episode.obs(leaf.name, t, t + 1)[0] for leaf in self.obs_leaves}

    def observations(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for start in range(0, self.length + 1, self.chunk):
            stop = min(start + self.chunk, self.length + 1)
            rows = {leaf.name: self.episode.obs(leaf.name, start, stop) for leaf in self.obs_leaves}
            for i in range(stop - start):
                yield start + i, {name: value[i] for name, value in rows.items()}


def spool_episode(spool: Path, key: str) -> Path:
    """A spool path, id or unique prefix -> the sealed episode's path (EpisodeNotFound/Ambiguous)."""
    return find_episode(spool, key)


def spool_all(spool: Path) -> list[Path]:
    """Every sealed episode in the spool and its uploaded area, discarded ones left out."""
    found: list[Path] = []
    for area in SEALED_AREAS:
        for path in sealed_episodes(spool, area):
            try:
                reason = Episode(path).end_reason
            except CorruptEpisodeError:
                reason = ""  # verified anyway, so the damage is reported, not hidden
            if reason != EndReason.DISCARDED:
                found.append(path)
    return found
