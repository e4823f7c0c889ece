"""The disk side of recording: chunk jobs into a ``.partial``, durable syncs, then sealing.

It runs wherever a sink puts it (``shared.spool.sinks``): in a writer process during play, in a thread
during crash recovery. Everything a job needs travels in the job, so it pickles across processes.

Power-loss write order (a power cut loses whatever was not fsynced):

1. Each chunk file is written under a temp name and renamed into place (readers and a SIGKILL
   never see half a chunk). Nothing is fsynced yet.
2. A *sync pass* makes a prefix of the episode durable: fsync the journal, every chunk file written
   since the last pass, and every directory whose entries changed (array dirs, and on the first pass
   the episode's groups, the episode dir and the spool dir); only then is ``committed.json``
   replaced (temp, fsync, rename, fsync of the episode dir). So a surviving ``committed.json``
   never counts a chunk that is not on disk.
3. A pass runs at a chunk boundary once ``SYNC_INTERVAL`` has passed since the last one, when the
   recorder lets go of an unsealed episode, when the recorder dies (the writer drains its jobs
   first), and at sealing. Why not every chunk: an fsync costs ~8 ms on this machine's disk
   (measured, ext4 on virtio) and an agent fills ~80 chunks a second; fsyncs issued from a pool
   in parallel share journal commits (1,000 files in ~80 ms against ~1.7 s one by one).
4. Sealing: the last chunk, every array's final metadata, the input log's arrays and the final
   attributes (carrying the checksums of the attributes and of every array's metadata) are
   written, and one sync pass fsyncs all of them (and the trimmed journal). Then ``committed.json``
   is dropped, ``.partial`` is renamed to ``.zarr`` (the rename is the sealed marker), the spool
   dir is fsynced, and only then are the journal, ``writer.lock`` and ``owners.json`` removed and
   the episode dir fsynced: a sealed episode is a plain Zarr hierarchy.

The contract this gives: a sealed episode survives a power cut whole. Of an open episode, what
survives is everything up to the last sync pass: at most ``SYNC_INTERVAL`` (1 s) of play plus the
chunk in progress, i.e. max(64 steps, ~1 s) -- 64 steps ~ 1.1 s in human play at 60 steps/s, about
1 s of steps for a fast agent. Recovery rebuilds the rest it can from the journal.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared.spool import schema, zarr_layout
from gymrec.shared.spool.checksums import sealed_attributes, sign
from gymrec.shared.spool.chunks import stored_digest
from gymrec.shared.spool.fsio import atomic_write, fsync_dir, fsync_file

log = logging.getLogger(__name__)
PER_OBS = (schema.OBS_GROUP + "/", schema.HASH_GROUP + "/")
SYNC_INTERVAL = 1.0  # seconds: the most play a power cut can cost an open episode (plus one chunk)
SYNC_THREADS = 16  # concurrent fsyncs share journal commits (see the module docstring)
GROUPS = (schema.OBS_GROUP, schema.HASH_GROUP, schema.ACTION_GROUP, schema.INFO_GROUP)


@dataclass(frozen=True)
class ArraySpec:
    name: str
    shape: tuple[int, ...]  # one row
    dtype: str


@dataclass(frozen=True)
class ChunkJob:
    partial: str
    index: int
    step_rows: int
    obs_rows: int
    chunk_steps: int
    specs: tuple[ArraySpec, ...]
    seal: dict[str, Any] | None = None  # the episode's whole final attributes; on the last job only
    journal_bytes: int = -1  # with seal: the journal's used length (its reserved tail is trimmed)
    sealed: str = ""
    sync: bool = False  # make everything so far durable now (the recorder lets go of the episode)


@dataclass
class _Open:
    """One episode's bookkeeping in the writer: what exists, and what is not durable yet."""

    created: set[str] = field(default_factory=set)
    files: set[Path] = field(default_factory=set)  # written since the last sync pass
    dirs: set[Path] = field(default_factory=set)  # whose entries changed since the last sync pass
    written: int = 0  # steps [0, written) are in chunk files
    committed: int = -1  # what the durable committed.json says (-1: none yet)
    last_sync: float = 0.0


@dataclass
class ChunkStore:
    """Writes jobs' chunks, runs the sync passes, seals. ``close()`` stops its fsync threads."""

    encoder: zarr_layout.ChunkEncoder = field(default_factory=zarr_layout.ChunkEncoder)
    clock: Callable[[], float] = time.monotonic
    episodes: dict[str, _Open] = field(default_factory=dict)
    _pool: ThreadPoolExecutor | None = None

    def run(self, job: ChunkJob, arrays: dict[str, np.ndarray]) -> None:
        state = self._open(job.partial)
        self.write(job, arrays, state)
        if job.seal is not None:
            self.finish(job, state)
            self.episodes.pop(job.partial, None)
        elif job.sync or self.clock() - state.last_sync >= SYNC_INTERVAL:
            self.sync(Path(job.partial), state)

    def _open(self, partial: str) -> _Open:
        state = self.episodes.get(partial)
        if state is None:
            path = Path(partial)
            # First sight of the episode: its creation (groups, the rename into the spool) is made
            # durable by the first sync pass, with the first chunks.
            state = self.episodes[partial] = _Open(last_sync=self.clock())
            state.files |= {path / schema.METADATA_NAME, *(path / g / schema.METADATA_NAME for g in GROUPS)}
            state.dirs |= {path.parent, path, *(path / g for g in GROUPS)}
        return state

    def write(self, job: ChunkJob, arrays: dict[str, np.ndarray], state: _Open) -> None:
        partial = Path(job.partial)
        for name, rows in arrays.items():
            if name.startswith(schema.OBS_GROUP + "/"):
                hashes = arrays[schema.HASH_GROUP + name[len(schema.OBS_GROUP) :]]
                for i in range(job.obs_rows):
                    hashes[i] = schema.row_hash(rows[i])
        for spec in job.specs:
            array_dir = partial / spec.name
            if spec.name not in state.created:
                # Shape 0 until sealing: after a kill only committed.json says how much is valid.
                zarr_layout.write_array_metadata(array_dir, 0, spec.shape, np.dtype(spec.dtype), job.chunk_steps)
                state.created.add(spec.name)
                state.files.add(array_dir / schema.METADATA_NAME)
                state.dirs |= {array_dir.parent, array_dir}
            used = job.obs_rows if spec.name.startswith(PER_OBS) else job.step_rows
            if used == 0:
                continue
            rows = arrays[spec.name]
            if used < len(rows):
                rows[used:] = 0  # the edge chunk's padding is never read; zeros compress best
            state.files.add(self.encoder.write(array_dir, job.index, rows))
            state.dirs.add(array_dir)
        state.written = job.index * job.chunk_steps + job.step_rows

    def sync(self, partial: Path, state: _Open, count: bool = True) -> None:
        """One sync pass: data, then the directories naming it, then (``count``) the marker that counts it."""
        journal = partial / schema.JOURNAL_NAME
        self._fsync_all(state.files | ({journal} if journal.exists() else set()), state.dirs)
        state.files, state.dirs = set(), set()
        if count and state.written != state.committed:
            atomic_write(partial / schema.COMMITTED_NAME, sign({"steps": state.written}))
            state.committed = state.written
        state.last_sync = self.clock()

    def sync_all(self) -> None:
        """Make every open episode durable as far as written (the recorder is gone)."""
        for partial, state in list(self.episodes.items()):
            if Path(partial).is_dir():
                self.sync(Path(partial), state)

    def forget(self, partial: str) -> None:
        self.episodes.pop(partial, None)

    def _fsync_all(self, files: Iterable[Path], dirs: Iterable[Path]) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(SYNC_THREADS, thread_name_prefix="gymrec-fsync")
        # Files first, then the directories that name them: a name is only durable once its data is.
        list(self._pool.map(fsync_file, sorted(files)))
        list(self._pool.map(fsync_dir, sorted(dirs)))

    def finish(self, job: ChunkJob, state: _Open) -> None:
        assert job.seal is not None
        partial, sealed = Path(job.partial), Path(job.sealed)
        length = int(job.seal["length"])
        for spec in job.specs:
            rows = length + 1 if spec.name.startswith(PER_OBS) else length
            zarr_layout.write_array_metadata(partial / spec.name, rows, spec.shape, np.dtype(spec.dtype), job.chunk_steps)
            state.files.add(partial / spec.name / schema.METADATA_NAME)
            state.dirs.add(partial / spec.name)
        attributes = self._store_input_log(partial, job.seal, state)
        # The arrays' metadata (shape, dtype, codecs) and the attributes themselves, in the root
        # group's attributes: a checksums.json beside them would be a non-Zarr entry that plain zarr
        # warns about. The sub-groups' zarr.json say nothing (~0.8 B a frame saved).
        arrays = [spec.name for spec in job.specs] + _input_arrays(partial)
        metadata = [f"{name}/{schema.METADATA_NAME}" for name in arrays]
        zarr_layout.write_group(partial, sealed_attributes(attributes, partial, metadata, _digests(partial, arrays)))
        state.files.add(partial / schema.METADATA_NAME)
        state.dirs.add(partial)
        journal = partial / schema.JOURNAL_NAME
        if job.journal_bytes >= 0 and journal.exists():
            os.truncate(journal, job.journal_bytes)
        self.sync(partial, state, count=False)
        # All of it is durable: the rename is the marker now. committed.json only ever counted a
        # .partial's steps; a crash between its unlink and the rename leaves a .partial whose
        # chunks recovery checks one by one (it trusts no marker), so nothing is lost either way.
        (partial / schema.COMMITTED_NAME).unlink(missing_ok=True)
        # A recovered episode that an earlier gymrec had sealed: the attribute supersedes its file.
        (partial / schema.CHECKSUMS_NAME).unlink(missing_ok=True)
        os.rename(partial, sealed)
        fsync_dir(sealed.parent)
        # Only now, with every row durable under its final name, have the journal, the lock and the
        # owners record done their job. A crash before these unlinks are durable leaves copies that
        # nothing reads; the next recovery scan removes them (shared.spool.recovery).
        try:
            for name in schema.WRITING_FILES:
                (sealed / name).unlink(missing_ok=True)
            fsync_dir(sealed)
        except FileNotFoundError:
            pass  # an uploader claimed it (a rename) this instant: the leftovers travel with it, unread
        log.info("sealed %s (%d steps, %s)", sealed.name, length, job.seal["end_reason"])

    def _store_input_log(self, partial: Path, seal: dict[str, Any], state: _Open) -> dict[str, Any]:
        """The final attributes, with an input log's event columns moved out into ``input/`` arrays."""
        events = seal.get("input_log")
        attributes = json.loads(json.dumps(seal))  # as a reader parses them back: the checksum covers that
        if not (isinstance(events, dict) and all(isinstance(events.get(c), list) for c in schema.INPUT_COLUMNS)):
            return dict(attributes)
        attributes["input_log"], written = zarr_layout.write_input_log(partial, events, self.encoder)
        state.files.update(written)
        state.dirs |= {partial, *(f.parent for f in written)}
        return dict(attributes)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


def _digests(root: Path, arrays: list[str]) -> dict[str, int]:
    """Each array's chunk digest, from the chunk files on disk, so an episode recovery seals gets the
    same as one its writer sealed: ~1 ms an episode (a 4-byte read a chunk, from the page cache)."""
    return {name: stored_digest(root, name) for name in arrays}


def _input_arrays(root: Path) -> list[str]:
    """The input-log arrays present (also those a recovered, once-sealed episode already had)."""
    return [schema.input_path(c) for c in schema.INPUT_COLUMNS
            if (root / schema.input_path(c) / schema.METADATA_NAME).is_file()]
