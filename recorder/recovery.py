"""Finish episodes whose writer died: re-simulate from the seed and the journal, check, seal.

An orphan is a ``.partial`` whose ``writer.lock`` can be taken (the kernel released the dead writer's
flock). Rows below the committed marker are on disk and are *checked* against the re-simulation;
rows past it are *rebuilt* from it. The journal holds every action the env was given, so in a
deterministic env no step is lost. Nothing is deleted: an episode that cannot be recovered is left
in place with a ``recovery-failed.txt`` that says why.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.errors import ZarrUserWarning

from recorder.writer import EpisodeWriter
from shared import schema
from shared.backends import make_env
from shared.episode import Episode, read_committed
from shared.errors import CorruptEpisodeError, GymrecError, RecoveryError
from shared.spaces import action_leaves, decode_action, encode_action, split_observation
from shared.spool import WriterLock, orphaned, partial_episodes

log = logging.getLogger(__name__)
FAILED_NOTE = "recovery-failed.txt"


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


def recover(partial: Path, lock: WriterLock) -> Recovered:
    """Recover one orphan whose lock the caller holds; the lock is released on return."""
    try:
        attrs = dict(zarr.open_group(str(partial), mode="r").attrs)
        schema.check_attrs(attrs, partial.name, sealed=False)
        chunk = int(attrs["chunk_steps"])
        # A marker written while sealing may be mid-chunk; redo that chunk from the re-simulation.
        committed = (read_committed(partial) // chunk) * chunk
        timestamps, journal = _journal(partial, attrs)
        if committed:
            _expose_committed(partial, committed)
        disk = Episode(partial, trusted_length=committed)
        desc = attrs["action_space"]
        disk_actions = {leaf.name: disk.batch(0, committed, with_obs=False).action[leaf.name] for leaf in disk.action_leaves} if committed else {}
        total = max(committed, len(timestamps))
        return _resimulate(partial, lock, attrs, disk, committed, total, desc, disk_actions, timestamps, journal)
    except BaseException:
        lock.release()
        raise


def _action_at(t: int, committed: int, desc: dict[str, Any], disk: dict[str, np.ndarray], journal: dict[str, np.ndarray]) -> Any:
    source = disk if t < committed else journal
    return decode_action(desc, {k: v[t] for k, v in source.items()})


def _resimulate(partial: Path, lock: WriterLock, attrs: dict[str, Any], disk: Episode, committed: int, total: int,
                desc: dict[str, Any], disk_actions: dict[str, np.ndarray], timestamps: np.ndarray,
                journal: dict[str, np.ndarray]) -> Recovered:
    made = make_env(attrs["env_id"], attrs["env_kwargs"], attrs["backend"])
    env = made.env
    try:
        obs, info = env.reset(seed=int(attrs["seed"]))
        checked = disk.batch(0, committed, with_obs=False) if committed else None
        hashes = {leaf.name: disk.hashes(leaf.name, 0, committed) for leaf in disk.obs_leaves} if committed else {}
        writer = EpisodeWriter(partial, lock, attrs, first_chunk=committed // int(attrs["chunk_steps"]), journal=False,
                               backpressure=True)
        writer.episode_return = float(checked.reward.sum()) if checked is not None else 0.0
        for t in range(total):
            action = _action_at(t, committed, desc, disk_actions, journal)
            leaves = split_observation(obs)
            if t < committed:
                assert checked is not None
                for name, row in leaves.items():
                    if name in hashes and schema.row_hash(row) != int(hashes[name][t]):
                        raise RecoveryError(f"{partial.name}: re-simulated observation {name!r} differs at step {t}",
                                            "the env is not deterministic; the episode is kept as it is")
            else:
                writer.record(leaves, encode_action(desc, action), info)
                if t < len(timestamps):
                    writer.restore_timestamp(float(timestamps[t]))
            obs, reward, terminated, truncated, info = env.step(action)
            if t < committed:
                assert checked is not None
                if (float(reward), bool(terminated), bool(truncated)) != (
                    float(checked.reward[t]), bool(checked.terminated[t]), bool(checked.truncated[t])):
                    raise RecoveryError(f"{partial.name}: re-simulated reward/termination differs at step {t}",
                                        "the env is not deterministic; the episode is kept as it is")
            else:
                writer.outcome(float(reward), bool(terminated), bool(truncated), info)
        extra = {"recovery": {"committed_steps": committed, "journal_steps": int(len(timestamps)),
                              "rebuilt_steps": total - committed, "recovered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}
        sealed = writer.seal(split_observation(obs), schema.EndReason.RECOVERED, extra)
        return Recovered(partial, sealed, committed, total - committed)
    finally:
        env.close()


def recover_orphans(spool: Path) -> list[Recovered]:
    """Recover every orphaned ``.partial`` in ``spool``; live writers' episodes are left alone."""
    results: list[Recovered] = []
    for partial in partial_episodes(spool):
        if (partial / FAILED_NOTE).exists():
            continue
        lock = orphaned(partial)
        if lock is None:
            continue
        try:
            results.append(recover(partial, lock))
            log.warning("recovered %s", partial.name)
        except (CorruptEpisodeError, RecoveryError) as e:
            (partial / FAILED_NOTE).write_text(f"{e}\n")
            log.error("cannot recover %s: %s", partial.name, e)
            results.append(Recovered(partial, None, 0, 0, str(e)))
        except GymrecError as e:  # e.g. the env or its ROM is missing here: try again on a later run
            log.error("cannot recover %s now: %s", partial.name, e)
            results.append(Recovered(partial, None, 0, 0, str(e)))
    return results
