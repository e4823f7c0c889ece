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

from gymrec.shared.errors import (
    ChunkCorruptError,
    CorruptEpisodeError,
    EpisodeNotFoundError,
    SchemaVersionError,
)
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.directory import SEALED_AREAS, find_episode, sealed_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.spool.spaces import ACTION_LEAF, Leaf, decode_action, obs_leaves

EXIT_CORRUPT = ChunkCorruptError.exit_code  # a run over many episodes that skipped a damaged one exits with it


def is_corruption(e: BaseException) -> bool:
    """Stored data that is damaged (a bad chunk, a truncated shard, unreadable attributes): a run over
    many episodes skips that episode and goes on. A newer schema is not damage: it needs another gymrec."""
    return isinstance(e, CorruptEpisodeError) and not isinstance(e, SchemaVersionError)


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
    cheap_frames = False  # frames decode fast (format-3 blocks): replay then checks every frame's hash by default

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

    def images(self, start: int, stop: int) -> np.ndarray:
        """The image leaf of observations ``start..stop-1`` (``length``: the final one), stacked."""
        key = self.attrs.image_key
        return np.stack([self.observation(t)[key] for t in range(start, stop)])

    def check_rows(self, name: str, rows: list[Any], expected: int) -> None:
        if len(rows) != expected:
            raise CorruptEpisodeError(
                f"{self.where}: {name} has {len(rows)} rows, expected {expected}", "the episode is truncated or damaged"
            )


class SpoolSource(EpisodeSource):
    """A sealed ``<id>.zarr`` episode, read through ``shared.spool.episode.Episode`` (``episode``: already open)."""

    def __init__(self, path: Path, episode: Episode | None = None) -> None:
        self.episode = episode if episode is not None else Episode(path)
        self.episode.require_steps()
        self.attrs = self.episode.attrs
        self.where = str(path)
        self.chunk = self.attrs.chunk_steps
        # Frames are compared by hash only, so every stored chunk is proven intact here, each read
        # once: the per-step arrays are decoded now (their crc32c checked as they are), the others
        # (frames, info, times) checksum-checked without decoding. Reading the per-step arrays twice
        # cost ~1 ms an episode, 1 % of ``--all`` over Breakout.
        self._steps = self._read_steps()
        self.episode.verify_checksums(skip=self._step_arrays())

    def _rows(self, name: str, count: int, dtype: np.dtype, shape: tuple[int, ...] = ()) -> np.ndarray:
        return self.episode.rows(name, count, dtype, shape)

    def _step_arrays(self) -> frozenset[str]:
        names = [schema.action_path(leaf.name) for leaf in self.episode.action_leaves]
        names += [schema.REWARD, schema.TERMINATED, schema.TRUNCATED]
        return frozenset(names + [schema.hash_path(leaf.name) for leaf in self.obs_leaves])

    def steps(self) -> RecordedSteps:
        return self._steps

    def _read_steps(self) -> RecordedSteps:
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
    """A spool path, id, unique prefix or ``#N`` -> the sealed episode's path (EpisodeNotFound/Ambiguous).
    ``#N`` counts in id order over every sealed episode, as it does in a dataset (``shared.dataset.reader``)."""
    if key.startswith("#") and key[1:].isdigit():
        every = sorted(spool_all(spool), key=lambda p: p.name)
        index = int(key[1:])
        if index >= len(every):
            raise EpisodeNotFoundError(f"{spool} holds {len(every)} sealed episodes; there is no index {index}",
                                       "use #0..#N-1, or an id or id prefix")
        return every[index]
    return find_episode(spool, key)


def spool_all(spool: Path) -> list[Path]:
    """Every sealed episode in the spool and its uploaded area (``open_unless_discarded`` skips discarded ones)."""
    return [path for area in SEALED_AREAS for path in sealed_episodes(spool, area)]


def open_unless_discarded(path: Path) -> SpoolSource | None:
    """The episode as a source, or None when it was discarded: one open serves both (opening one
    costs ~2 ms, and ``--all`` used to open every episode twice)."""
    episode = Episode(path)  # a damaged one raises here, so it is reported, not skipped
    if episode.end_reason == EndReason.DISCARDED:
        return None
    return SpoolSource(path, episode)
