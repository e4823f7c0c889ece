"""Replay verdicts on request: the replay package's own ``verify``, cached per process, never stored.

One env pool for the process (making an ALE env costs ~120 ms) behind one lock: requests come in on
a thread pool, and an env steps one episode at a time. A verdict is kept in memory only; the source is
read-only to the viewer.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gymrec.replay.verify import EnvPool, Result, VerifyOptions, verify
from gymrec.shared.errors import GymrecError
from gymrec.shared.spool.sources import EpisodeSource, is_corruption

log = logging.getLogger(__name__)


def result_json(result: Result) -> dict[str, Any]:
    divergence = result.divergence
    return {
        "episode_id": result.episode_id,
        "status": result.status,
        "first_divergence": divergence.line() if divergence else None,
        "steps_run": result.steps_run,
        "seconds": round(result.seconds, 3),
        "warnings": list(result.warnings),
    }


class Verdicts:
    """Each episode's verdict, computed at most once per process."""

    def __init__(self, diff_dir: Path) -> None:
        self.options = VerifyOptions(diff_dir=diff_dir)
        self._envs = EnvPool()
        self._lock = threading.Lock()
        self._done: dict[str, dict[str, Any]] = {}

    def cached(self, episode_id: str) -> dict[str, Any] | None:
        return self._done.get(episode_id)

    def of(self, episode_id: str, open_source: Callable[[str], EpisodeSource]) -> dict[str, Any]:
        with self._lock:
            found = self._done.get(episode_id)
            if found is not None:
                return found
            warnings: list[str] = []
            source = open_source(episode_id)  # an unknown id raises here: nothing is cached for it
            try:
                verdict = result_json(verify(source, self.options, warn=warnings.append, envs=self._envs))
            except GymrecError as e:  # a damaged episode or a missing env is the verdict, not a server error
                status = "corrupt" if is_corruption(e) else "error"
                verdict = {"episode_id": episode_id, "status": status, "error": str(e), "warnings": warnings}
            self._done[episode_id] = verdict
            return verdict

    def close(self) -> None:
        with self._lock:
            self._envs.close()
