"""Write one episode into the spool, crash-safely, without stalling the game loop.

Write order (what survives a SIGKILL at any instant):

1. ``<id>.partial/`` with its attributes and a flocked ``writer.lock`` exists before the first step
   (built under a hidden name and renamed once locked, so it never looks orphaned).
2. Each action goes to the journal (``shared.spool.journal``) *before* ``env.step`` runs it, so the
   journal is never behind the env: recovery can re-simulate every step that was taken.
3. Rows collect in a chunk buffer (a memcpy). A full chunk goes to a sink (``shared.spool.sinks``),
   whose writer compresses each array's chunk into the Zarr v3 layout (temp name, then rename);
   its sync passes fsync the journal and the chunks, and only then replace ``committed.json``
   (``shared.spool.chunk_store`` documents the power-loss write order and what a power cut can cost).
4. Sealing is the sink's last job for the episode: the last chunk and the final observation, the
   arrays' real shapes, the final attributes, one fsync pass over all of it, then the rename of
   ``.partial`` to ``.zarr`` and an fsync of the spool. Readers see all of an episode or none of it;
   a crash before the rename leaves a ``.partial`` to recover.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared.errors import DiskFullError, SpoolError
from gymrec.shared.spool import schema, zarr_layout
from gymrec.shared.spool.attrs import EpisodeAttrs, utc_now
from gymrec.shared.spool.chunk_store import ArraySpec, ChunkJob
from gymrec.shared.spool.directory import WriterLock, write_owners
from gymrec.shared.spool.journal import Journal
from gymrec.shared.spool.sinks import Failure, Sink, Slot
from gymrec.shared.spool.spaces import Leaf, action_leaves

_INFO_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)
_OBS_PREFIX = schema.obs_path("")


def _spool_failure(code: int, message: str, where: Path) -> Exception:
    if code == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {where.parent} is full",
            "free some space; the episode so far is kept and is recovered on the next run",
        )
    return SpoolError(f"cannot write {where}: {message}", "check the spool directory")


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


class EpisodeWriter:
    """The game side of one episode: the journal, the current chunk's rows, and the hand-offs."""

    def __init__(self, partial: Path, lock: WriterLock, attrs: EpisodeAttrs, sink: Sink | None = None, *,
                 first_chunk: int = 0, journal: bool = True, backpressure: bool = False) -> None:
        self.partial = partial
        self.attrs = attrs
        self.sealed_path = partial.with_name(schema.sealed_name(attrs.episode_id))
        self._lock = lock
        # Without a shared sink (recovery, tests), the episode gets a private writer thread.
        self._own_sink = sink is None
        self._sink = sink if sink is not None else Sink(process=False)
        self._block = backpressure
        self.chunk_steps = attrs.chunk_steps
        self._action_leaves: list[Leaf] = action_leaves(attrs.action_space)
        self._journal_format = schema.JournalFormat(tuple(self._action_leaves))
        try:
            self._journal = Journal(partial / schema.JOURNAL_NAME, self._journal_format.record_size) if journal else None
        except OSError as e:
            raise _spool_failure(e.errno or 0, str(e), partial / schema.JOURNAL_NAME) from e
        self._chunk = first_chunk
        self.steps = first_chunk * self.chunk_steps
        self._count = 0
        self._slot: Slot | None = None
        self._specs: tuple[ArraySpec, ...] = ()
        self._info_keys: tuple[str, ...] = ()
        self._obs_rows: dict[str, np.ndarray] = {}
        self._action_rows: dict[str, np.ndarray] = {}
        self._stamp_rows: np.ndarray = np.empty(0)
        self._step_rows: tuple[np.ndarray | None, ...] = ()
        self._outcome_rows: tuple[np.ndarray, ...] = ()
        self._info_rows: tuple[tuple[str, np.ndarray], ...] = ()
        self._ended = False
        self.episode_return = 0.0

    @classmethod
    def create(cls, spool: Path, attrs: EpisodeAttrs, sink: Sink | None = None, *,
               backpressure: bool = False) -> EpisodeWriter:
        partial = spool / schema.partial_name(attrs.episode_id)
        staging = spool / f".{partial.name}.creating"
        try:
            # Plain writes: the staging directory enters the spool whole, by one rename, so a temp name
            # and a rename per file (as zarr_layout.write_group does) bought nothing here.
            staging.mkdir()
            _write_new(staging / schema.METADATA_NAME, zarr_layout.group_json(attrs.as_dict()))
            empty = zarr_layout.group_json({})
            for sub in (schema.OBS_GROUP, schema.HASH_GROUP, schema.ACTION_GROUP, schema.INFO_GROUP):
                (staging / sub).mkdir()
                _write_new(staging / sub / schema.METADATA_NAME, empty)
            lock = WriterLock(staging / schema.LOCK_NAME, shared=True)
            if not lock.try_acquire():  # a fresh UUID directory: only a bug could make this happen
                raise SpoolError(f"{staging} is locked by another process")
            write_owners(staging, [os.getpid(), *([sink.child_pid] if sink is not None and sink.child_pid else [])])
            os.rename(staging, partial)
        except OSError as e:
            raise _spool_failure(e.errno or 0, str(e), partial) from e
        return cls(partial, lock, attrs, sink, backpressure=backpressure)

    # --- per step (the game loop's hot path) -------------------------------------------------------

    def _raise(self, failure: Failure) -> None:
        raise _spool_failure(failure[0], failure[1], self.partial)

    def _init_rows(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        specs = []
        for name, value in obs.items():
            specs.append(ArraySpec(schema.obs_path(name), value.shape, value.dtype.str))
            specs.append(ArraySpec(schema.hash_path(name), (), "<u8"))
        specs += [ArraySpec(schema.action_path(leaf.name), leaf.shape, leaf.dtype.str) for leaf in self._action_leaves]
        specs += [ArraySpec(name, (), dtype.str) for name, dtype in schema.STEP_SCALARS.items()]
        kept = schema.STEP_TIMES.keys() if self.attrs.step_times is None else self.attrs.step_times
        specs += [ArraySpec(name, (), schema.STEP_TIMES[name].str) for name in kept]
        skipped = set(self.attrs.info_skipped)
        keys = [k for k, v in sorted(info.items())
                if k not in skipped and isinstance(v, _INFO_TYPES) and np.ndim(v) == 0]
        specs += [ArraySpec(schema.info_path(k), (), np.asarray(info[k]).dtype.str) for k in keys]
        self._specs = tuple(specs)
        self._info_keys = tuple(keys)

    def _rows(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> dict[str, np.ndarray]:
        if self._slot is None:
            if not self._specs:
                self._init_rows(obs, info)
            self._slot = self._sink.slot(self._specs, self.chunk_steps, block=self._block)
            self._bind(self._slot.arrays)
        return self._slot.arrays

    def _bind(self, arrays: dict[str, np.ndarray]) -> None:
        """The slot's arrays by leaf name, looked up once a chunk: building "obs/" + name and looking
        it up cost ~3 us a step of the ~116 us ``record`` took per step (cProfile, Breakout)."""
        self._obs_rows = {spec.name[len(_OBS_PREFIX):]: arrays[spec.name] for spec in self._specs
                          if spec.name.startswith(_OBS_PREFIX)}
        self._action_rows = {leaf.name: arrays[schema.action_path(leaf.name)] for leaf in self._action_leaves}
        self._stamp_rows = arrays[schema.TIMESTAMP]
        self._step_rows = tuple(arrays.get(name) for name in (schema.SHOWN_NS, schema.DECIDED_NS, schema.ACTOR))
        self._outcome_rows = (arrays[schema.REWARD], arrays[schema.TERMINATED], arrays[schema.TRUNCATED])
        self._info_rows = tuple((key, arrays[schema.info_path(key)]) for key in self._info_keys)

    def record(self, obs: dict[str, np.ndarray], action: dict[str, np.ndarray], info: dict[str, Any] | None = None,
               times: tuple[int, int] = (0, 0), actor: int = 0) -> None:
        """Journal the action chosen on ``obs``; call right before ``env.step``.

        ``times``: (shown, decided) monotonic ns; ``actor``: an index into ``schema.ACTORS``.
        """
        timestamp = time.time()
        if self._journal is not None:
            try:
                self._journal.append(self._journal_format.pack(timestamp, action, times, actor))
            except OSError as e:
                raise _spool_failure(e.errno or 0, str(e), self.partial / schema.JOURNAL_NAME) from e
        if self._slot is None:
            self._rows(obs, info or {})
        row = self._count
        obs_rows = self._obs_rows
        for name, value in obs.items():
            obs_rows[name][row] = value
        action_rows = self._action_rows
        for name, value in action.items():
            action_rows[name][row] = value
        self._stamp_rows[row] = timestamp
        shown, decided, actors = self._step_rows
        if shown is not None and decided is not None:
            shown[row], decided[row] = times
        if actors is not None:
            actors[row] = actor

    def restore_timestamp(self, timestamp: float) -> None:
        """Recovery replays journaled steps: keep their original wall-clock times."""
        assert self._slot is not None
        self._slot.arrays[schema.TIMESTAMP][self._count] = timestamp

    def outcome(self, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """The result of the step just recorded; hands a full chunk to the sink."""
        assert self._slot is not None, "outcome() without record()"
        row = self._count
        rewards, terminateds, truncateds = self._outcome_rows
        rewards[row] = reward
        terminateds[row] = terminated
        truncateds[row] = truncated
        for key, column in self._info_rows:
            column[row] = info.get(key, 0)
        self.episode_return += float(reward)
        self._count += 1
        self.steps += 1
        if self._count == self.chunk_steps:
            self._hand_off()

    def _hand_off(self, seal: dict[str, Any] | None = None, journal_bytes: int = -1) -> None:
        assert self._slot is not None
        failure = self._sink.failure(str(self.partial))
        if failure is not None:
            self._raise(failure)
        obs_rows = self._count + (1 if seal is not None else 0)
        job = ChunkJob(str(self.partial), self._chunk, self._count, obs_rows, self.chunk_steps, self._specs, seal,
                       journal_bytes, str(self.sealed_path))
        self._sink.submit(job, self._slot)
        self._chunk += 1
        self._count = 0
        self._slot = None

    # --- ending -------------------------------------------------------------------------------------

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._ended:  # left early (the env or the disk failed): the .partial stays for recovery
            self.close_without_sealing()

    def close_without_sealing(self) -> None:
        """Let the sink finish and sync what it was given, then let go: the .partial stays for recovery.

        The chunk in progress is not written: its steps are in the journal, which recovery replays.
        """
        self._ended = True
        if self._specs and self._sink.failure(str(self.partial)) is None:
            self._sink.submit(ChunkJob(str(self.partial), self._chunk, 0, 0, self.chunk_steps, self._specs, sync=True), None)
        self._sink.wait(str(self.partial))
        # Let go on purpose: the lock alone now says whether the episode is an orphan.
        (self.partial / schema.OWNERS_NAME).unlink(missing_ok=True)
        if self._journal is not None:
            self._journal.close(durable=False)
        self._let_go()

    def _let_go(self) -> None:
        self._lock.release()
        if self._own_sink:
            self._sink.close()

    def seal(self, final_obs: dict[str, np.ndarray], end_reason: str, extra: dict[str, Any] | None = None,
             wait: bool = True) -> Path:
        """Hand over the last chunk and the sealing; with ``wait=False`` the game goes on meanwhile."""
        rows = self._rows(final_obs, {})
        for name, value in final_obs.items():
            rows[schema.obs_path(name)][self._count] = value
        used = -1
        if self._journal is not None:
            used = self._journal.used
            self._journal.close(durable=False)  # the sink trims and fsyncs it before the rename
            self._journal = None
        seal = {**(extra or {}), "ended_at": utc_now(), "end_reason": str(end_reason), "length": self.steps,
                "episode_return": self.episode_return}
        self._ended = True
        self._hand_off(self.attrs.updated(seal, self.partial.name).as_dict(), used)
        if wait:
            self.wait()
        return self.sealed_path

    def wait(self) -> Path:
        """Block until the sink has sealed the episode; raises what it hit (e.g. DiskFullError)."""
        failure = self._sink.wait(str(self.partial))
        self._let_go()
        if failure is not None:
            self._raise(failure)
        return self.sealed_path
