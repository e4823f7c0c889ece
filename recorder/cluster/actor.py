"""The Ray actor of ``gymrec-play --ray``: its own env and writer process, recording planned episodes
into its node's spool exactly as ``--workers`` does (``recorder.workers.AgentRecorder``).

The actor learns its spool from its node, at its edge (``NodeEdge.from_environ``, read once when the
actor starts): ``GYMREC_SPOOL`` as the node's ``ray start`` process had it (Ray workers inherit the
raylet's environment), else the default spool of that machine. Nothing below reads the environment.

This module does not import ray: the driver wraps ``RecordingActor`` with ``ray.remote``, so the
recorder's import contracts and its start-up stay the same without the extra installed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gymrec.recorder.cluster.plan import PlannedEpisode
from gymrec.recorder.config import Planned, PlayConfig
from gymrec.recorder.tracked_source import StopRequest
from gymrec.recorder.workers import AgentRecorder
from gymrec.shared.cli.paths import default_spool
from gymrec.shared.cli.progress import NoProgress
from gymrec.shared.errors import CorruptEpisodeError, SpoolError
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import SEALED_AREAS, check_spool, orphaned
from gymrec.shared.spool.episode import episode_attributes
from gymrec.shared.spool.recovery import set_aside_episode, superseded_reason

log = logging.getLogger(__name__)
IN_FLIGHT = 2  # episodes an actor holds: one playing, one sealing
ORPHAN_WAIT = 30.0  # seconds a killed actor's writer process may take to let go of its episode


@dataclass(frozen=True)
class NodeEdge:
    """What an actor takes from its node, once: where its spool is, where chunk buffers may spill."""

    spool: Path
    spill_dir: Path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str], temp_dir: str) -> NodeEdge:
        return cls(default_spool(environ), Path(temp_dir))


@dataclass(frozen=True)
class Recorded:
    """One planned episode as an actor reports it: where it is sealed, and its kept steps."""

    index: int
    path: str
    steps: int
    discarded: bool = False
    already: bool = False  # sealed here by an earlier attempt whose report was lost: not recorded again


def sealed_copy(spool: Path, episode_id: str) -> Path | None:
    """This node's sealed, kept copy of an episode (in the spool or an uploader's areas), or None."""
    for area in SEALED_AREAS:
        path = spool / area / schema.sealed_name(episode_id)
        if path.is_dir():
            try:
                attrs = episode_attributes(path, sealed=True)
            except (CorruptEpisodeError, OSError):
                return None
            if attrs.end_reason != schema.EndReason.DISCARDED:
                return path
    return None


def make_room(spool: Path, planned: PlannedEpisode, wait: float = ORPHAN_WAIT) -> None:
    """Set aside what an earlier attempt at ``planned`` left in this spool (a killed actor's partial, or
    recovery's superseded seal of it), kept with the reason: the new attempt records under the same name."""
    reason = superseded_reason(planned.run, planned.index)
    partial = spool / schema.partial_name(planned.episode_id)
    deadline = time.monotonic() + wait
    while partial.exists():
        lock = orphaned(partial)  # the dead actor's writer process may still be finishing a chunk
        if lock is not None:
            try:
                set_aside_episode(partial, reason)
            finally:
                lock.release()
            break
        if time.monotonic() > deadline:
            raise SpoolError(f"{partial} is still being written by another process",
                             "stop the other recorder of this planned episode")
        time.sleep(0.1)
    sealed = spool / schema.sealed_name(planned.episode_id)
    if sealed.is_dir():  # sealed as discarded (recovery superseded it, or a stop before its first step)
        set_aside_episode(sealed, reason)


class RecordingActor:
    """One env and one writer process on one node; records the planned episodes the driver hands it.

    The driver keeps ``IN_FLIGHT`` episodes with each actor (a threaded Ray actor with that many
    threads): one plays while the one before waits for its seal, so the env never idles on the
    writer's fsyncs. Playing takes ``_playing``: one env, one episode at a time.
    """

    def __init__(self, config: PlayConfig, environ: Mapping[str, str] | None = None) -> None:
        # The actor's edge: the only place it reads its node's environment.
        edge = NodeEdge.from_environ(os.environ if environ is None else environ, tempfile.gettempdir())
        spool = check_spool(edge.spool, create=True)
        self.config = dataclasses.replace(config, spool=spool, spill_dir=edge.spill_dir, headless=True)
        self.recorder = AgentRecorder(self.config)
        self._playing = threading.Lock()

    def ready(self) -> str:
        """The spool this actor records into (the driver's sign that the actor started)."""
        return str(self.config.spool)

    def record(self, planned: PlannedEpisode) -> Recorded:
        spool = self.config.spool
        with self._playing:
            existing = sealed_copy(spool, planned.episode_id)
            if existing is not None:
                length = episode_attributes(existing, sealed=True).length or 0
                return Recorded(planned.index, str(existing), length, already=True)
            make_room(spool, planned)
            config = dataclasses.replace(self.config, seed=planned.seed, episodes=1,
                                         planned=Planned(planned.run, planned.index, planned.episode_id))
            sealing = self.recorder.play(config, NoProgress(), StopRequest())
        result = sealing.wait()  # the next episode plays meanwhile
        if not result.sealed:  # the agent's source declined to begin: nothing was written
            raise SpoolError(f"planned episode {planned.index} was not started", "check the agent")
        path = result.sealed[0]
        return Recorded(planned.index, str(path), result.steps, discarded=bool(result.discarded))

    def close(self) -> None:
        self.recorder.close()
