"""Write one episode into the spool, crash-safely, without stalling the game loop.

Write order (what survives a SIGKILL at any instant):

1. ``<id>.partial/`` with its attributes and ``writer.lock`` (flocked) exist before the first step.
2. Each action goes to ``journal.bin`` (an unbuffered append) *before* ``env.step`` runs it, so the
   journal is never behind the env: recovery can re-simulate every step that was taken.
3. Rows collect in a chunk buffer on the game thread (a memcpy). A full chunk goes through a queue to
   the writer thread, which compresses each array's chunk and writes it straight into the Zarr v3
   layout (temp name, then rename), then atomically replaces ``committed.json``. zarr's own array
   writes cost ~0.4 ms a frame in Python; this path costs one zstd call per chunk.
4. Sealing writes the last chunk and the final observation, sets the arrays' shapes and the final
   attributes, then renames ``.partial`` to ``.zarr``: readers see all of the episode or none of it.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from shared import schema
from shared.errors import DiskFullError, SpoolError
from shared.spaces import Leaf, action_leaves
from shared.spool import WriterLock

log = logging.getLogger(__name__)
_PER_OBS = (schema.OBS_GROUP + "/", schema.HASH_GROUP + "/")


@dataclass
class _Job:
    index: int
    step_rows: int
    obs_rows: int
    arrays: dict[str, np.ndarray]
    final: bool = False


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _spool_failure(e: OSError, where: Path) -> Exception:
    if e.errno == errno.ENOSPC:
        return DiskFullError(
            f"the disk holding {where.parent} is full",
            "free some space; the episode so far is kept and is recovered on the next run",
        )
    return SpoolError(f"cannot write {where}: {e.strerror or e}", "check the spool directory")


class EpisodeWriter:
    """Owns one ``.partial`` episode from creation (or crash recovery) to sealing."""

    def __init__(
        self,
        partial: Path,
        lock: WriterLock,
        attrs: dict[str, Any],
        *,
        first_chunk: int = 0,
        journal: bool = True,
        backpressure: bool = False,
    ) -> None:
        self.partial = partial
        self.attrs = attrs
        self._lock = lock
        self.chunk_steps = int(attrs["chunk_steps"])
        self._codec = numcodecs.Zstd(level=schema.ZSTD_LEVEL)
        self._group = zarr.open_group(str(partial), mode="r+")
        self._action_leaves: list[Leaf] = action_leaves(attrs["action_space"])
        self._journal_format = schema.JournalFormat(tuple(self._action_leaves))
        self._journal_fd = os.open(partial / schema.JOURNAL_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) if journal else -1
        self._chunk = first_chunk
        self.steps = first_chunk * self.chunk_steps
        self._count = 0
        self._buffers: dict[str, np.ndarray] | None = None
        self._row_specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self._info_keys: tuple[str, ...] | None = None
        self._free: queue.SimpleQueue[dict[str, np.ndarray]] = queue.SimpleQueue()
        # Human play must never wait on the disk, so its queue is unbounded; agents accept backpressure.
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=4 if backpressure else 0)
        self._failure: Exception | None = None
        self._thread = threading.Thread(target=self._run, name=f"gymrec-writer-{partial.stem[:8]}", daemon=True)
        self._thread.start()
        self.episode_return = 0.0

    # --- creation -------------------------------------------------------------------------------

    @classmethod
    def create(cls, spool: Path, attrs: dict[str, Any], *, backpressure: bool = False) -> EpisodeWriter:
        partial = spool / schema.partial_name(attrs["episode_id"])
        # Built under a hidden name and renamed only once locked, so recovery never sees a
        # .partial that has no live lock yet looks orphaned.
        staging = spool / f".{partial.name}.creating"
        try:
            staging.mkdir()
            group = zarr.open_group(str(staging), mode="w-", zarr_format=3)
            group.attrs.update(attrs)
            for sub in (schema.OBS_GROUP, schema.HASH_GROUP, schema.ACTION_GROUP, schema.INFO_GROUP):
                group.require_group(sub)
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
        keys = []
        for key, value in sorted(info.items()):
            if isinstance(value, bool | int | float | np.bool_ | np.integer | np.floating) and np.ndim(value) == 0:
                keys.append(key)
                self._row_specs[schema.info_path(key)] = ((), np.asarray(value).dtype)
        self._info_keys = tuple(keys)

    def record(self, obs: dict[str, np.ndarray], action: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> None:
        """Journal the action chosen on ``obs``; call right before ``env.step``."""
        self._check()
        timestamp = time.time()
        if self._journal_fd >= 0:
            try:
                os.write(self._journal_fd, self._journal_format.pack(timestamp, action))
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
        for key in self._info_keys or ():
            buffers[schema.INFO_GROUP + "/" + key][row] = info.get(key, 0)
        self.episode_return += float(reward)
        self._count += 1
        self.steps += 1
        if self._count == self.chunk_steps:
            self._hand_off(final=False)

    def _hand_off(self, final: bool) -> None:
        assert self._buffers is not None
        obs_rows = self._count + (1 if final else 0)
        self._jobs.put(_Job(self._chunk, self._count, obs_rows, self._buffers, final))
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
            if job is None:
                return
            if self._failure is not None:
                continue  # keep draining so the game thread never blocks on a dead writer
            try:
                self._write(job)
            except OSError as e:
                self._failure = _spool_failure(e, self.partial)
                log.debug("spool write failed: %s", self._failure)  # re-raised on the game thread
            finally:
                if not job.final:
                    self._free.put(job.arrays)

    def _array_dir(self, name: str, rows: np.ndarray) -> Path:
        if name not in self._group:
            self._group.create_array(
                name,
                shape=(0, *rows.shape[1:]),
                chunks=rows.shape,
                dtype=rows.dtype,
                compressors=ZstdCodec(level=schema.ZSTD_LEVEL),
                fill_value=0,
            )
        return self.partial / name

    def _write(self, job: _Job) -> None:
        for name, rows in job.arrays.items():
            if name.startswith(schema.OBS_GROUP + "/"):
                hashes = job.arrays[schema.HASH_GROUP + name[len(schema.OBS_GROUP) :]]
                for i in range(job.obs_rows):
                    hashes[i] = schema.row_hash(rows[i])
        for name, rows in job.arrays.items():
            used = job.obs_rows if name.startswith(_PER_OBS) else job.step_rows
            array_dir = self._array_dir(name, rows)  # even empty arrays exist, so a sealed episode is whole
            if used == 0:
                continue
            if used < len(rows):
                rows[used:] = 0  # the edge chunk's padding is never read; zeros compress best
            target = schema.chunk_file(array_dir, job.index, rows.ndim)
            target.parent.mkdir(parents=True, exist_ok=True)
            _atomic_write(target, self._codec.encode(np.ascontiguousarray(rows)))
        if self._journal_fd >= 0:
            os.fsync(self._journal_fd)
        committed = job.index * self.chunk_steps + job.step_rows
        _atomic_write(self.partial / schema.COMMITTED_NAME, json.dumps({"steps": committed}).encode())

    # --- sealing ----------------------------------------------------------------------------------

    def close_without_sealing(self) -> None:
        """Stop the writer thread after writing what is queued; the .partial stays for recovery."""
        self._jobs.put(None)
        self._thread.join()
        if self._journal_fd >= 0:
            os.close(self._journal_fd)
            self._journal_fd = -1
        self._lock.release()

    def seal(self, final_obs: dict[str, np.ndarray], end_reason: str, extra: dict[str, Any] | None = None) -> Path:
        """Write the rest, fix the shapes and attributes, rename to the sealed name. Returns it."""
        self._check()
        if self._buffers is None:
            if not self._row_specs:
                self._init_rows(final_obs, {})
            self._buffers = self._new_buffers()
        for name, value in final_obs.items():
            self._buffers[schema.obs_path(name)][self._count] = value
        self._hand_off(final=True)
        self._jobs.put(None)
        self._thread.join()
        self._check()
        length = self.steps
        try:
            for name, (shape, _) in self._row_specs.items():
                rows = length + 1 if name.startswith(_PER_OBS) else length
                array = self._group[name]
                assert isinstance(array, zarr.Array)
                array.resize((rows, *shape))
            _atomic_write(self.partial / schema.COMMITTED_NAME, json.dumps({"steps": length, "sealed": True}).encode())
            self._group.attrs.update(
                {
                    **(extra or {}),
                    "ended_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "end_reason": str(end_reason),
                    "length": length,
                    "episode_return": self.episode_return,
                }
            )
            if self._journal_fd >= 0:
                os.fsync(self._journal_fd)
                os.close(self._journal_fd)
                self._journal_fd = -1
            sealed = self.partial.with_name(schema.sealed_name(self.attrs["episode_id"]))
            os.rename(self.partial, sealed)
            dir_fd = os.open(sealed.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as e:
            raise _spool_failure(e, self.partial) from e
        finally:
            self._lock.release()
        log.info("sealed %s (%d steps, %s)", sealed.name, length, end_reason)
        return sealed
