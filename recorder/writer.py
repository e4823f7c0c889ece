"""Write one episode into the spool, crash-safely, without stalling the game loop.

Write order (what survives a SIGKILL at any instant):

1. ``<id>.partial/`` with its attributes and a flocked ``writer.lock`` exists before the first step
   (built under a hidden name and renamed once locked, so it never looks orphaned).
2. Each action goes to ``journal.bin`` (an unbuffered append) *before* ``env.step`` runs it, so the
   journal is never behind the env: recovery can re-simulate every step that was taken.
3. Rows collect in a chunk buffer on the game thread (a memcpy). A full chunk goes through a queue to
   the writer thread, which compresses each array's chunk into the Zarr v3 layout (temp name, then
   rename) and then atomically replaces ``committed.json``.
4. Sealing is the writer thread's last job: the last chunk and the final observation, the arrays'
   real shapes, the final attributes, then the rename of ``.partial`` to ``.zarr``. Readers see all
   of an episode or none of it; a crash before the rename leaves a ``.partial`` for recovery.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recorder import zarr_layout
from recorder.journal import Journal
from shared import schema
from shared.errors import DiskFullError, SpoolError
from shared.spaces import Leaf, action_leaves
from shared.spool import WriterLock

log = logging.getLogger(__name__)
_PER_OBS = (schema.OBS_GROUP + "/", schema.HASH_GROUP + "/")
_INFO_TYPES = (bool, int, float, np.bool_, np.integer, np.floating)


@dataclass
class _Job:
    index: int
    step_rows: int
    obs_rows: int
    arrays: dict[str, np.ndarray]
    seal: dict[str, Any] | None = field(default=None)


def _spool_failure(e: OSError, where: Path) -> Exception:
    if e.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {where.parent} is full",
            "free some space; the episode so far is kept and is recovered on the next run",
        )
    return SpoolError(f"cannot write {where}: {e.strerror or e}", "check the spool directory")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class EpisodeWriter:
    """Owns one ``.partial`` episode from creation (or crash recovery) to sealing."""

    def __init__(self, partial: Path, lock: WriterLock, attrs: dict[str, Any], *, first_chunk: int = 0,
                 journal: bool = True, backpressure: bool = False) -> None:
        self.partial = partial
        self.attrs = attrs
        self.sealed_path = partial.with_name(schema.sealed_name(attrs["episode_id"]))
        self._lock = lock
        self.chunk_steps = int(attrs["chunk_steps"])
        self._encoder = zarr_layout.ChunkEncoder()
        self._action_leaves: list[Leaf] = action_leaves(attrs["action_space"])
        self._journal_format = schema.JournalFormat(tuple(self._action_leaves))
        try:
            self._journal = Journal(partial / schema.JOURNAL_NAME, self._journal_format.record_size) if journal else None
        except OSError as e:
            raise _spool_failure(e, partial / schema.JOURNAL_NAME) from e
        self._chunk = first_chunk
        self.steps = first_chunk * self.chunk_steps
        self._count = 0
        self._buffers: dict[str, np.ndarray] | None = None
        self._row_specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._info_keys: tuple[str, ...] = ()
        self._created: set[str] = set()
        self._free: queue.SimpleQueue[dict[str, np.ndarray]] = queue.SimpleQueue()
        # Human play must never wait on the disk, so its queue is unbounded; agents accept backpressure.
        self._jobs: queue.Queue[_Job] = queue.Queue(maxsize=4 if backpressure else 0)
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"gymrec-writer-{partial.stem[:8]}", daemon=True)
        self._thread.start()
        self.episode_return = 0.0

    @classmethod
    def create(cls, spool: Path, attrs: dict[str, Any], *, backpressure: bool = False) -> EpisodeWriter:
        partial = spool / schema.partial_name(attrs["episode_id"])
        staging = spool / f".{partial.name}.creating"
        try:
            zarr_layout.write_group(staging, attrs)
            for sub in (schema.OBS_GROUP, schema.HASH_GROUP, schema.ACTION_GROUP, schema.INFO_GROUP):
                zarr_layout.write_group(staging / sub, {})
            lock = WriterLock(staging / schema.LOCK_NAME)
            if not lock.try_acquire():  # a fresh UUID directory: only a bug could make this happen
                raise SpoolError(f"{staging} is locked by another process")
            os.rename(staging, partial)
        except OSError as e:
            raise _spool_failure(e, partial) from e
        return cls(partial, lock, attrs, backpressure=backpressure)

    # --- the game thread -------------------------------------------------------------------------

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _new_buffers(self) -> dict[str, np.ndarray]:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return {name: np.zeros((self.chunk_steps, *shape), dtype) for name, (shape, dtype) in self._row_specs.items()}

    def _init_rows(self, obs: dict[str, np.ndarray], info: dict[str, Any]) -> None:
        for name, value in obs.items():
            self._row_specs[schema.obs_path(name)] = (value.shape, value.dtype)
            self._row_specs[schema.hash_path(name)] = ((), np.dtype(np.uint64))
        for leaf in self._action_leaves:
            self._row_specs[schema.action_path(leaf.name)] = (leaf.shape, leaf.dtype)
        self._row_specs |= {name: ((), dtype) for name, dtype in schema.STEP_SCALARS.items()}
        keys = [k for k, v in sorted(info.items()) if isinstance(v, _INFO_TYPES) and np.ndim(v) == 0]
        self._row_specs |= {schema.info_path(k): ((), np.asarray(info[k]).dtype) for k in keys}
        self._info_keys = tuple(keys)

    def record(self, obs: dict[str, np.ndarray], action: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> None:
        """Journal the action chosen on ``obs``; call right before ``env.step``."""
        self._check()
        timestamp = time.time()
        if self._journal is not None:
            try:
                self._journal.append(self._journal_format.pack(timestamp, action))
            except OSError as e:
                raise _spool_failure(e, self.partial / schema.JOURNAL_NAME) from e
        if self._buffers is None:
            if not self._row_specs:
                self._init_rows(obs, info or {})
            self._buffers = self._new_buffers()
        row = self._count
        buffers = self._buffers
        for name, value in obs.items():
            buffers[schema.OBS_GROUP + "/" + name][row] = value
        for name, value in action.items():
            buffers[schema.ACTION_GROUP + "/" + name][row] = value
        buffers[schema.TIMESTAMP][row] = timestamp

    def restore_timestamp(self, timestamp: float) -> None:
        """Recovery replays journaled steps: keep their original wall-clock times."""
        assert self._buffers is not None
        self._buffers[schema.TIMESTAMP][self._count] = timestamp

    def outcome(self, reward: float, terminated: bool, truncated: bool, info: dict[str, Any]) -> None:
        """The result of the step just recorded; hands a full chunk to the writer thread."""
        assert self._buffers is not None, "outcome() without record()"
        row = self._count
        buffers = self._buffers
        buffers[schema.REWARD][row] = reward
        buffers[schema.TERMINATED][row] = terminated
        buffers[schema.TRUNCATED][row] = truncated
        for key in self._info_keys:
            buffers[schema.INFO_GROUP + "/" + key][row] = info.get(key, 0)
        self.episode_return += float(reward)
        self._count += 1
        self.steps += 1
        if self._count == self.chunk_steps:
            self._hand_off(None)

    def _hand_off(self, seal: dict[str, Any] | None) -> None:
        assert self._buffers is not None
        obs_rows = self._count + (1 if seal is not None else 0)
        self._jobs.put(_Job(self._chunk, self._count, obs_rows, self._buffers, seal))
        self._chunk += 1
        self._count = 0
        self._buffers = None

    @property
    def queued_chunks(self) -> int:
        return self._jobs.qsize()

    # --- the writer thread ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job.index < 0:
                return
            if self._failure is None:
                try:
                    self._write(job)
                    if job.seal is not None:
                        self._finish(job.seal)
                except OSError as e:
                    self._failure = _spool_failure(e, self.partial)
                    log.debug("spool write failed: %s", self._failure)  # re-raised on the game thread
            if job.seal is not None:
                self._close_files()
                return
            self._free.put(job.arrays)

    def _write(self, job: _Job) -> None:
        for name, rows in job.arrays.items():
            if name.startswith(schema.OBS_GROUP + "/"):
                hashes = job.arrays[schema.HASH_GROUP + name[len(schema.OBS_GROUP) :]]
                for i in range(job.obs_rows):
                    hashes[i] = schema.row_hash(rows[i])
        for name, rows in job.arrays.items():
            used = job.obs_rows if name.startswith(_PER_OBS) else job.step_rows
            if name not in self._created:
                # Shape 0 until sealing: after a kill only committed.json says how much is valid.
                shape, dtype = self._row_specs[name]
                zarr_layout.write_array_metadata(self.partial / name, 0, shape, dtype, self.chunk_steps)
                self._created.add(name)
            if used == 0:
                continue
            if used < len(rows):
                rows[used:] = 0  # the edge chunk's padding is never read; zeros compress best
            self._encoder.write(self.partial / name, job.index, rows)
        # No fsync of the journal here: ext4 makes the game thread's appends wait for it (~100 us a
        # step measured), and a killed process loses nothing the kernel already has. Sealing fsyncs.
        committed = job.index * self.chunk_steps + job.step_rows
        zarr_layout.atomic_write(self.partial / schema.COMMITTED_NAME, json.dumps({"steps": committed}).encode())

    def _finish(self, seal: dict[str, Any]) -> None:
        length = self.steps
        for name, (shape, dtype) in self._row_specs.items():
            rows = length + 1 if name.startswith(_PER_OBS) else length
            zarr_layout.write_array_metadata(self.partial / name, rows, shape, dtype, self.chunk_steps)
        zarr_layout.atomic_write(self.partial / schema.COMMITTED_NAME,
                                 json.dumps({"steps": length, "sealed": True}).encode())
        zarr_layout.write_group(self.partial, {**self.attrs, **seal})
        if self._journal is not None:
            self._journal.close(durable=True)
        os.rename(self.partial, self.sealed_path)
        dir_fd = os.open(self.sealed_path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        # The sealed arrays now hold every action and timestamp: the write-ahead journal has done its job.
        (self.sealed_path / schema.JOURNAL_NAME).unlink(missing_ok=True)
        log.info("sealed %s (%d steps, %s)", self.sealed_path.name, length, seal["end_reason"])

    def _close_files(self) -> None:
        if self._journal is not None:
            self._journal.close(durable=False)
        self._lock.release()

    # --- ending -----------------------------------------------------------------------------------

    def close_without_sealing(self) -> None:
        """Stop the writer thread after writing what is queued; the .partial stays for recovery."""
        self._jobs.put(_Job(-1, 0, 0, {}))
        self._thread.join()
        self._close_files()

    def seal(self, final_obs: dict[str, np.ndarray], end_reason: str, extra: dict[str, Any] | None = None,
             wait: bool = True) -> Path:
        """Queue the last chunk and the sealing; with ``wait=False`` the game goes on meanwhile."""
        self._check()
        if self._buffers is None:
            if not self._row_specs:
                self._init_rows(final_obs, {})
            self._buffers = self._new_buffers()
        for name, value in final_obs.items():
            self._buffers[schema.obs_path(name)][self._count] = value
        seal = {**(extra or {}), "ended_at": utc_now(), "end_reason": str(end_reason), "length": self.steps,
                "episode_return": self.episode_return}
        self._hand_off(seal)
        if wait:
            self.wait()
        return self.sealed_path

    def wait(self) -> Path:
        """Block until sealed; raises what the writer thread hit (e.g. DiskFullError)."""
        self._thread.join()
        self._check()
        return self.sealed_path
