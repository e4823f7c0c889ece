"""Finish episodes whose writer died: re-simulate from the seed and the journal, check, seal.

An orphan is a ``.partial`` whose ``writer.lock`` can be taken (the kernel released the dead writer's
flock) and none of whose recorded owner processes exists (a stopped writer still exists). What
survived is surveyed by ``shared.spool.salvage``: the checksum-verified prefix on disk is *checked*
against the re-simulation, and rows past it are *rebuilt* from the journal. In a deterministic env
no journaled step is lost.

Nothing is deleted: chunk files recovery cannot use are set aside; an episode whose re-simulation
disagrees with the disk is left in place with a ``recovery-failed.txt`` that says why; one whose
attributes are unreadable is moved to ``set-aside`` with a reason. A failure that may be transient
(an I/O error, a missing ROM) leaves no note, so the next run tries again. Spool entries that are
not gymrec's (no episode id in the name) and episodes of a newer schema are skipped with a warning.

The same scan tidies what crashes leave that is provably garbage: an interrupted episode creation
(metadata only, its creator gone) and the writing files a sealed episode kept because a crash came
between sealing's rename and its unlinks. Anything else it finds there is set aside, not deleted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gymrec.shared.envs.backends import EpisodeStarter, make_env_for
from gymrec.shared.errors import CorruptEpisodeError, GymrecError, RecoveryError, SchemaVersionError
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import utc_now
from gymrec.shared.spool.directory import (
    SET_ASIDE_AREA,
    WriterLock,
    orphaned,
    owner_alive,
    partial_episodes,
    sealed_episodes,
)
from gymrec.shared.spool.spaces import decode_action, encode_action, split_observation

if TYPE_CHECKING:
    from collections.abc import Callable

    from gymrec.shared.spool.episode import Episode, StepBatch
    from gymrec.shared.spool.salvage import Survivors
    from gymrec.shared.spool.writer import EpisodeWriter

log = logging.getLogger(__name__)
FAILED_NOTE = "recovery-failed.txt"
REASON_SUFFIX = ".reason.txt"
STAGING_GRACE = 60.0  # seconds


@dataclass(frozen=True)
class Recovered:
    partial: Path
    sealed: Path | None
    checked_steps: int
    rebuilt_steps: int
    error: str = ""


@dataclass(frozen=True)
class _Orphan:
    partial: Path
    disk: Episode  # the verified prefix, readable through Episode
    survivors: Survivors

    @property
    def verified(self) -> int:
        return self.survivors.verified

    def actions(self) -> list[Any]:
        """Every step's action: from the verified rows on disk, then from the journal."""
        desc = self.disk.attrs.action_space
        on_disk = self.disk.batch(0, self.verified, with_obs=False).action if self.verified else {}
        journal = self.survivors.journal
        return [
            decode_action(desc, {k: v[t] for k, v in (on_disk if t < self.verified else journal).items()})
            for t in range(self.survivors.total)
        ]

    def diverged(self, t: int, what: str) -> RecoveryError:
        return RecoveryError(f"{self.partial.name}: re-simulated {what} differs at step {t}",
                             "the env is not deterministic; the episode is kept as it is")


def _load(partial: Path) -> _Orphan:
    # Imported here: they load zarr (~120 ms of every gymrec-play start-up, measured), which only an orphan needs.
    from gymrec.shared.spool.episode import Episode
    from gymrec.shared.spool.salvage import survey

    survivors = survey(partial, Episode(partial, trusted_length=0))  # the attributes are validated here
    return _Orphan(partial, Episode(partial, trusted_length=survivors.verified), survivors)


def recover(partial: Path, lock: WriterLock) -> Recovered:
    """Recover one orphan whose lock the caller holds; the lock is released on return."""
    # Both load zarr (see _load); replay and the uploader need neither unless an orphan is found.
    from gymrec.shared.spool.salvage import set_aside_unusable
    from gymrec.shared.spool.writer import EpisodeWriter

    with contextlib.ExitStack() as stack:
        stack.callback(lock.release)  # idempotent: sealing releases it too
        orphan = _load(partial)
        attrs = orphan.disk.attrs
        made = make_env_for(attrs)
        env = stack.enter_context(contextlib.closing(made.env))
        first_chunk = orphan.verified // attrs.chunk_steps
        set_aside_unusable(orphan.disk, orphan.survivors, first_chunk)
        writer = stack.enter_context(EpisodeWriter(partial, lock, attrs, first_chunk=first_chunk, journal=False,
                                                   backpressure=True))
        return _resimulate(orphan, made.starter, env, writer, first_chunk * attrs.chunk_steps)
    raise AssertionError("unreachable")  # for type checkers: ExitStack does not swallow exceptions


def _step_fields(orphan: _Orphan, checked: StepBatch | None) -> Callable[[int], tuple[int, int, int]]:
    """Step t's (shown_ns, decided_ns, actor) as the recorder knew them: from the verified rows on disk,
    then from the journal (a journal from before it kept them: 0, 0 and the episode's one actor)."""
    on_disk = checked.times if checked is not None else {}
    journal = orphan.survivors.steps
    verified = orphan.verified
    default = schema.ACTORS.index("agent" if orphan.disk.attrs.collector not in ("human", None) else "human")

    def fields(t: int) -> tuple[int, int, int]:
        source = on_disk if t < verified else journal
        values = [source[name][t] if name in source and t < len(source[name]) else None
                  for name in (schema.SHOWN_NS, schema.DECIDED_NS, schema.ACTOR)]  # fmt: skip
        shown, decided, actor = (int(v) if v is not None else None for v in values)
        return shown or 0, decided or 0, default if actor is None else actor

    return fields


def _resimulate(orphan: _Orphan, starter: EpisodeStarter, env: Any, writer: EpisodeWriter,
                rewrite_from: int) -> Recovered:
    """Step the env through every action; check rows [0, verified), (re)write rows from ``rewrite_from``.

    Rows in [rewrite_from, verified) are both: the chunk they share with newer rows is written
    again, from the same actions, after they were checked.
    """
    verified, total = orphan.verified, orphan.survivors.total
    checked = orphan.disk.batch(0, verified, with_obs=False) if verified else None
    hashes = {leaf.name: orphan.disk.hashes(leaf.name, 0, verified) for leaf in orphan.disk.obs_leaves} if verified else {}
    writer.episode_return = float(checked.reward[:rewrite_from].sum()) if checked is not None else 0.0
    attrs = orphan.disk.attrs
    desc = attrs.action_space
    stamps = orphan.survivors.timestamps
    started = starter.restart(attrs.seed, attrs.start_state)  # the stored start state (ALE) or the seed
    obs, info = started.obs, started.info
    step_fields = _step_fields(orphan, checked)
    for t, action in enumerate(orphan.actions()):
        leaves = split_observation(obs)
        if t < verified:
            for name, row in leaves.items():
                if name in hashes and schema.row_hash(row) != int(hashes[name][t]):
                    raise orphan.diverged(t, f"observation {name!r}")
        if t >= rewrite_from:
            shown, decided, actor = step_fields(t)
            writer.record(leaves, encode_action(desc, action), info, (shown, decided), actor)
            if checked is not None and t < verified:
                writer.restore_timestamp(float(checked.timestamp[t]))
            elif t < len(stamps):
                writer.restore_timestamp(float(stamps[t]))
        obs, reward, terminated, truncated, info = env.step(action)
        if checked is not None and t < verified and (float(reward), bool(terminated), bool(truncated)) != (
            float(checked.reward[t]), bool(checked.terminated[t]), bool(checked.truncated[t])
        ):
            raise orphan.diverged(t, "reward or termination")
        if t >= rewrite_from:
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
    rebuilt = total - verified
    extra: dict[str, Any] = {"recovery": {
        "committed_steps": orphan.survivors.claimed, "verified_steps": verified,
        "journal_steps": orphan.survivors.journal_steps, "rebuilt_steps": rebuilt, "recovered_at": utc_now()}}
    end = schema.EndReason.RECOVERED
    if total == 0:  # killed before its first step: nothing to keep, but nothing to upload either
        end, extra["discarded_because"] = schema.EndReason.DISCARDED, "the recorder stopped before the first step"
    elif attrs.plan_index is not None:
        # A planned run re-records, from its plan (same seed, same id), every episode it did not see
        # sealed: this partial is superseded by that recording, so it stays here and is never published.
        end, extra["discarded_because"] = schema.EndReason.DISCARDED, superseded_reason(attrs.run, attrs.plan_index)
    sealed = writer.seal(split_observation(obs), end, extra)
    return Recovered(orphan.partial, sealed, verified, rebuilt)


def superseded_reason(run: str | None, index: int) -> str:
    return f"superseded: episode {index} of the planned run {run!r}, which re-records it from its plan"


def _tidy_staging(spool: Path) -> None:
    """``.<id>.partial.creating`` of a recorder killed while creating an episode.

    Creation writes only metadata there (the journal and every chunk come after the rename to
    ``.partial``), so one whose creator is gone and that holds nothing else is provably garbage and
    is removed; anything else in it is set aside with a reason. One a live recorder may still be
    building (younger than ``STAGING_GRACE``, locked, or owned by a live process) is left alone.
    """
    for staging in sorted(spool.glob(".*" + schema.PARTIAL_SUFFIX + schema.STAGING_SUFFIX)):
        try:
            if time.time() - staging.stat().st_mtime < STAGING_GRACE:
                continue  # a live recorder may be between mkdir and taking its lock
            if owner_alive(staging):
                continue
            lock = WriterLock(staging / schema.LOCK_NAME)  # created if the recorder died before its own
            if not lock.try_acquire():
                continue
        except (FileNotFoundError, NotADirectoryError):
            continue  # renamed into place (or gone) meanwhile
        try:
            alien = _not_creation_files(staging)
            if alien:
                target = set_aside_episode(staging, f"an interrupted episode creation holding {alien[0]}, "
                                                     "which creation never writes")
                log.warning("%s holds %s; moved to %s", staging.name, alien[0], target)
            else:
                shutil.rmtree(staging)
                log.info("removed %s: an episode creation that never finished (no step recorded)", staging.name)
        except OSError as e:
            log.warning("cannot tidy %s: %s", staging.name, e)
        finally:
            lock.release()


def _not_creation_files(staging: Path) -> list[str]:
    """The files under ``staging`` that ``EpisodeWriter.create`` does not write (metadata, lock, owners)."""
    made = {schema.METADATA_NAME, schema.LOCK_NAME, schema.OWNERS_NAME}
    made |= {f".{name}.tmp" for name in made}  # an atomic write the kill interrupted
    return sorted(str(f.relative_to(staging)) for f in staging.rglob("*") if not f.is_dir() and f.name not in made)


def _tidy_sealed(spool: Path) -> None:
    """Remove what a crash between sealing's rename and its unlinks left in a sealed episode.

    Sealing makes every row durable before the rename, so a journal, lock, owners record or marker
    in a ``.zarr`` is read by nothing; left there, plain zarr warns about each one.
    """
    for sealed in sealed_episodes(spool):
        for name in schema.WRITING_FILES:
            try:
                (sealed / name).unlink()
                log.info("%s: removed a leftover %s", sealed.name, name)
            except FileNotFoundError:
                continue
            except OSError as e:
                log.debug("cannot remove %s/%s: %s", sealed.name, name, e)


def format_report(results: list[Recovered]) -> str:
    """What a command prints about the orphans it recovered, one line each ("" for none)."""
    return "".join(
        f"recovered {r.sealed.name}: {r.checked_steps} steps checked, {r.rebuilt_steps} rebuilt\n"
        if r.sealed is not None else f"could not recover {r.partial.name}: {r.error}\n"
        for r in results
    )


def set_aside_episode(partial: Path, reason: str) -> Path:
    """Move an episode recovery cannot read out of the spool's way, with the reason beside it."""
    area = partial.parent / SET_ASIDE_AREA
    area.mkdir(exist_ok=True)
    target = area / partial.name
    while target.exists():  # set aside before under the same name: keep both
        target = target.with_name(f"{partial.name}.{time.time_ns()}")
    os.rename(partial, target)
    (area / (target.name + REASON_SUFFIX)).write_text(reason + "\n")
    return target


def _recover_one(partial: Path) -> Recovered | None:
    lock = orphaned(partial)
    if lock is None:
        return None
    try:
        result = recover(partial, lock)
        log.info("recovered %s", partial.name)
        return result
    except SchemaVersionError as e:  # a newer gymrec's episode: not ours to touch
        return Recovered(partial, None, 0, 0, str(e))
    except RecoveryError as e:  # the env disagrees with the disk: a fact, not a passing state
        (partial / FAILED_NOTE).write_text(f"{e}\n")
        log.error("%s", e)
        return Recovered(partial, None, 0, 0, str(e))
    except CorruptEpisodeError as e:  # its attributes are unreadable: out of the way, kept whole
        target = set_aside_episode(partial, str(e))
        log.error("%s; moved to %s", e, target)
        return Recovered(partial, None, 0, 0, f"{e}; moved to {target}")
    except GymrecError as e:  # e.g. the env or its ROM is missing here: try again on a later run
        log.error("cannot recover %s now: %s", partial.name, e)
        return Recovered(partial, None, 0, 0, str(e))
    except OSError as e:  # an I/O error, a full disk: may pass, so no note; the next run retries
        log.error("cannot recover %s now: %s", partial.name, e)
        return Recovered(partial, None, 0, 0, f"{e.strerror or e} (tried again on the next run)")
    finally:
        lock.release()


def recover_orphans(spool: Path) -> list[Recovered]:
    """Recover every orphaned ``.partial`` in ``spool``; live writers' episodes are left alone.

    Nothing in the spool stops the others: a directory that is not gymrec's is skipped with a
    warning, and a read-only spool is reported once and left as it is (its sealed episodes still
    replay).
    """
    results: list[Recovered] = []
    candidates = []
    for partial in partial_episodes(spool):
        if schema.id_from_name(partial.name) is None:
            log.warning("%s is not a gymrec episode (no episode id in its name); skipped", partial)
            continue
        if not (partial / FAILED_NOTE).exists():
            candidates.append(partial)
    if not os.access(spool, os.W_OK | os.X_OK):
        return [Recovered(p, None, 0, 0, f"the spool {spool} is read-only; recovered on a writable run")
                for p in candidates[:1]]
    _tidy_staging(spool)
    _tidy_sealed(spool)
    for partial in candidates:
        result = _recover_one(partial)
        if result is not None:
            results.append(result)
    return results
