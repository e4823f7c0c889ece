"""One episode as the training reader sees it: its per-step arrays, read once, and its frames by range.

Every store (a format-2 dataset, the spool, format-3 blocks) is one class behind ``EpisodeReader``;
the windows and the loader know nothing else about where an episode lives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool import schema

NO_ACTOR = -1  # padding, and steps of an episode that does not say who chose them


@dataclass(frozen=True)
class StepArrays:
    """Every step of one episode, as arrays of T rows (T = the episode's length)."""

    action: dict[str, np.ndarray]  # action leaf -> (T, *leaf shape), the spool's leaf values
    reward: np.ndarray  # float64
    terminated: np.ndarray  # bool
    truncated: np.ndarray  # bool
    timestamp: np.ndarray  # float64, seconds since the epoch
    shown_ns: np.ndarray  # int64, 0 where not measured (agents, older episodes)
    decided_ns: np.ndarray  # int64, 0 where not measured
    actor: np.ndarray  # int8: an index into schema.ACTORS (human, agent, copied)


class EpisodeReader(Protocol):
    """A recorded episode, opened in the process that reads it (never pickled)."""

    episode_id: str
    length: int

    def steps(self) -> StepArrays: ...

    def frames(self, start: int, stop: int, verify: bool) -> np.ndarray:
        """Observations [start, stop) of the image leaf as (n, H, W, C) uint8; ``verify`` checks each
        decoded frame against its recorded hash (CorruptEpisodeError naming the step)."""


def collector_actor(collector: str, length: int) -> np.ndarray:
    """An episode that keeps no actor array: every step is its collector's (as the uploader publishes it)."""
    return np.full(length, schema.ACTORS.index("human" if collector == "human" else "agent"), dtype=np.int8)


def as_hwc(frames: np.ndarray) -> np.ndarray:
    """(n, H, W) grayscale frames gain a channel axis, so every window is (K, H, W, C)."""
    return frames[..., np.newaxis] if frames.ndim == 3 else frames


def check_frames(frames: np.ndarray, hashes: np.ndarray, start: int, where: str) -> None:
    """Each frame's xxh3 equals the hash recorded with it (the recorder's ``schema.row_hash``)."""
    for i, frame in enumerate(frames):
        if schema.row_hash(frame) != int(hashes[i]):
            raise CorruptEpisodeError(f"{where}: the frame of step {start + i} does not match its recorded hash",
                                      "the episode is damaged; replay it with gymrec-replay to see where")  # fmt: skip
