"""A sealed spool episode for the training reader: frames straight from its 64-step zstd chunks.

Every chunk read is crc32c-checked by ``shared.spool.episode``; ``verify`` adds the per-frame hash.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gymrec.data.episodes import StepArrays, as_hwc, check_frames, collector_actor
from gymrec.shared.spool import schema
from gymrec.shared.spool.episode import Episode


class SpoolEpisode:
    def __init__(self, path: Path) -> None:
        self.episode = Episode(path)
        self.episode.require_steps()
        self.episode_id = self.episode.id
        self.length = self.episode.length
        self._key = self.episode.attrs.image_key

    def steps(self) -> StepArrays:
        batch = self.episode.batch(0, self.length, with_obs=False)
        actor = batch.times.get(schema.ACTOR)
        zeros = np.zeros(self.length, dtype=np.int64)
        return StepArrays(
            action=batch.action,
            reward=batch.reward.astype(np.float64, copy=False),
            terminated=batch.terminated.astype(np.bool_, copy=False),
            truncated=batch.truncated.astype(np.bool_, copy=False),
            timestamp=batch.timestamp.astype(np.float64, copy=False),
            shown_ns=batch.times.get(schema.SHOWN_NS, zeros).astype(np.int64, copy=False),
            decided_ns=batch.times.get(schema.DECIDED_NS, zeros).astype(np.int64, copy=False),
            actor=(collector_actor(self.episode.attrs.collector, self.length) if actor is None
                   else actor.astype(np.int8)),  # fmt: skip
        )

    def frames(self, start: int, stop: int, verify: bool) -> np.ndarray:
        rows = self.episode.obs(self._key, start, stop)
        if verify:
            check_frames(rows, self.episode.hashes(self._key, start, stop), start, str(self.episode.path))
        return as_hwc(rows)
