"""Finish episodes whose writer died: re-simulate from the seed and the journal, check, seal.

An orphan is a ``.partial`` whose ``writer.lock`` can be taken (the kernel released the dead writer's
flock). Rows below the committed marker are on disk and are *checked* against the re-simulation;
rows past it are *rebuilt* from it. The journal holds every action the env was given, so in a
deterministic env no step is lost. Nothing is deleted: an episode that cannot be recovered is left
in place with a ``recovery-failed.txt`` that says why.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.errors import ZarrUserWarning

from gymrec.recorder.writer import EpisodeWriter
from gymrec.shared import schema
from gymrec.shared.backends import EpisodeStarter, make_env
from gymrec.shared.episode import Episode, read_committed
from gymrec.shared.errors import CorruptEpisodeError, GymrecError, RecoveryError
from gymrec.shared.spaces import action_leaves, decode_action, encode_action, split_observation
from gymrec.shared.spool import WriterLock, orphaned, partial_episodes

log = logging.getLogger(__name__)
FAILED_NOTE = "recovery-failed.txt"
STAGING_GRACE = 60.0  # seconds


@dataclass(frozen=True)
class Recovered:
    partial: Path
    sealed: Path | None
    checked_steps: int
    rebuilt_steps: int
    error: str = ""


def _expose_committed(partial: Path, committed: int) -> None:
    """Grow array metadata to cover the committed rows, so zarr will read them (shapes lag by design)."""
    group = zarr.open_group(str(partial), mode="r+")
    with warnings.catch_warnings():
        # The journal, marker and lock live beside the arrays; zarr warns about them when listing.
        warnings.simplefilter("ignore", ZarrUserWarning)
        arrays = [a for _, a in group.arrays()] + [a for _, sub in group.groups() for _, a in sub.arrays()]
    for array in arrays:
        array.resize((committed, *array.shape[1:]))


def _journal(partial: Path, attrs: dict[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    fmt = schema.JournalFormat(tuple(action_leaves(attrs["action_space"])))
    try:
        data = (partial / schema.JOURNAL_NAME).read_bytes()
    except FileNotFoundError:
        data = b""
    return fmt.unpack_all(data)


@dataclass
class _Orphan:
    """What survived of one episode: committed rows on disk, and the journal beyond them."""

    partial: Path
    attrs: dict[str, Any]
    committed: int
    timestamps: np.ndarray
    journal: dict[str, np.ndarray]
    disk: Episode

    @property
    def total(self) -> int:
        return max(self.committed, len(self.timestamps))

    def actions(self) -> list[Any]:
        desc = self.attrs["action_space"]
        on_disk = self.disk.batch(0, self.committed, with_obs=False).action if self.committed else {}
        return [
            decode_action(desc, {k: v[t] for k, v in (on_disk if t < self.committed else self.journal).items()})
            for t in range(self.total)
        ]

    def diverged(self, t: int, what: str) -> RecoveryError:
        return RecoveryError(f"{self.partial.name}: re-simulated {what} differs at step {t}",
                             "the env is not deterministic; the episode is kept as it is")


def _load(partial: Path) -> _Orphan:
    attrs: dict[str, Any] = dict(zarr.open_group(str(partial), mode="r").attrs)
    schema.check_attrs(attrs, partial.name, sealed=False, expected_id=schema.id_from_name(partial.name))
    chunk = int(attrs["chunk_steps"])
    # A marker written while sealing may be mid-chunk; redo that chunk from the re-simulation.
    committed = (read_committed(partial) // chunk) * chunk
    timestamps, journal = _journal(partial, attrs)
    if committed:
        _expose_committed(partial, committed)
    return _Orphan(partial, attrs, committed, timestamps, journal, Episode(partial, trusted_length=committed))


def recover(partial: Path, lock: WriterLock) -> Recovered:
    """Recover one orphan whose lock the caller holds; the lock is released on return."""
    with contextlib.ExitStack() as stack:
        stack.callback(lock.release)  # idempotent: sealing releases it too
        orphan = _load(partial)
        made = make_env(orphan.attrs["env_id"], orphan.attrs["env_kwargs"], orphan.attrs["backend"])
        stack.enter_context(contextlib.closing(made.env))
        writer = stack.enter_context(EpisodeWriter(
            partial, lock, orphan.attrs, first_chunk=orphan.committed // int(orphan.attrs["chunk_steps"]),
            journal=False, backpressure=True))
        return _resimulate(orphan, made.starter, made.env, writer)
    raise AssertionError("unreachable")  # for type checkers: ExitStack does not swallow exceptions


def _resimulate(orphan: _Orphan, starter: EpisodeStarter, env: Any, writer: EpisodeWriter) -> Recovered:
    committed = orphan.committed
    checked = orphan.disk.batch(0, committed, with_obs=False) if committed else None
    hashes = {leaf.name: orphan.disk.hashes(leaf.name, 0, committed) for leaf in orphan.disk.obs_leaves} if committed else {}
    writer.episode_return = float(checked.reward.sum()) if checked is not None else 0.0
    desc = orphan.attrs["action_space"]
    started = starter.restart(orphan.attrs)  # the stored start state (ALE) or the seed
    obs, info = started.obs, started.info
    for t, action in enumerate(orphan.actions()):
        leaves = split_observation(obs)
        if t < committed:
            for name, row in leaves.items():
                if name in hashes and schema.row_hash(row) != int(hashes[name][t]):
                    raise orphan.diverged(t, f"observation {name!r}")
        else:
            writer.record(leaves, encode_action(desc, action), info)
            if t < len(orphan.timestamps):
                writer.restore_timestamp(float(orphan.timestamps[t]))
        obs, reward, terminated, truncated, info = env.step(action)
        if checked is None or t >= committed:
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
        elif (float(reward), bool(terminated), bool(truncated)) != (
            float(checked.reward[t]), bool(checked.terminated[t]), bool(checked.truncated[t])
        ):
            raise orphan.diverged(t, "reward or termination")
    rebuilt = orphan.total - committed
    extra: dict[str, Any] = {"recovery": {"committed_steps": committed, "journal_steps": int(len(orphan.timestamps)),
                             "rebuilt_steps": rebuilt, "recovered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
    end = schema.EndReason.RECOVERED
    if orphan.total == 0:  # killed before its first step: nothing to keep, but nothing to upload either
        end, extra["discarded_because"] = schema.EndReason.DISCARDED, "the recorder stopped before the first step"
    sealed = writer.seal(split_observation(obs), end, extra)
    return Recovered(orphan.partial, sealed, committed, rebuilt)


def _remove_dead_staging(spool: Path) -> None:
    """``.<id>.partial.creating`` of a recorder killed mid-creation: metadata only, never a step."""
    for staging in spool.glob(".*" + schema.PARTIAL_SUFFIX + ".creating") if spool.is_dir() else ():
        try:
            if time.time() - staging.stat().st_mtime < STAGING_GRACE:
                continue  # a live recorder may be between mkdir and taking its lock
        except FileNotFoundError:
            continue
        lock = orphaned(staging)
        if lock is not None:
            lock.release()
            shutil.rmtree(staging, ignore_errors=True)


def recover_orphans(spool: Path) -> list[Recovered]:
    """Recover every orphaned ``.partial`` in ``spool``; live writers' episodes are left alone."""
    results: list[Recovered] = []
    _remove_dead_staging(spool)
    for partial in partial_episodes(spool):
        if (partial / FAILED_NOTE).exists():
            continue
        lock = orphaned(partial)
        if lock is None:
            continue
        try:
            results.append(recover(partial, lock))
            log.info("recovered %s", partial.name)
        except (CorruptEpisodeError, RecoveryError) as e:
            (partial / FAILED_NOTE).write_text(f"{e}\n")
            log.error("%s", e)
            results.append(Recovered(partial, None, 0, 0, str(e)))
        except GymrecError as e:  # e.g. the env or its ROM is missing here: try again on a later run
            log.error("cannot recover %s now: %s", partial.name, e)
            results.append(Recovered(partial, None, 0, 0, str(e)))
    return results
