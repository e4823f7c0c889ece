"""The disk side of recording: one chunk job at a time into a ``.partial``, then sealing.

It runs wherever a sink puts it (``recorder.sinks``): in a writer process during play, in a thread
during crash recovery. Everything a job needs travels in the job, so it pickles across processes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.recorder import zarr_layout
from gymrec.shared import schema
from gymrec.shared.fsio import atomic_write

log = logging.getLogger(__name__)
PER_OBS = (schema.OBS_GROUP + "/", schema.HASH_GROUP + "/")


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


@dataclass
class ChunkStore:
    """Remembers which arrays exist per episode, so metadata is written once per array."""

    encoder: zarr_layout.ChunkEncoder = field(default_factory=zarr_layout.ChunkEncoder)
    created: dict[str, set[str]] = field(default_factory=dict)

    def run(self, job: ChunkJob, arrays: dict[str, np.ndarray]) -> None:
        self.write(job, arrays)
        if job.seal is not None:
            self.finish(job)
            self.created.pop(job.partial, None)

    def write(self, job: ChunkJob, arrays: dict[str, np.ndarray]) -> None:
        partial = Path(job.partial)
        for name, rows in arrays.items():
            if name.startswith(schema.OBS_GROUP + "/"):
                hashes = arrays[schema.HASH_GROUP + name[len(schema.OBS_GROUP) :]]
                for i in range(job.obs_rows):
                    hashes[i] = schema.row_hash(rows[i])
        created = self.created.setdefault(job.partial, set())
        for spec in job.specs:
            rows = arrays[spec.name]
            used = job.obs_rows if spec.name.startswith(PER_OBS) else job.step_rows
            if spec.name not in created:
                # Shape 0 until sealing: after a kill only committed.json says how much is valid.
                zarr_layout.write_array_metadata(partial / spec.name, 0, spec.shape, np.dtype(spec.dtype), job.chunk_steps)
                created.add(spec.name)
            if used == 0:
                continue
            if used < len(rows):
                rows[used:] = 0  # the edge chunk's padding is never read; zeros compress best
            self.encoder.write(partial / spec.name, job.index, rows)
        committed = job.index * job.chunk_steps + job.step_rows
        atomic_write(partial / schema.COMMITTED_NAME, json.dumps({"steps": committed}).encode(), durable=False)

    def finish(self, job: ChunkJob) -> None:
        assert job.seal is not None
        partial, sealed = Path(job.partial), Path(job.sealed)
        length = int(job.seal["length"])
        for spec in job.specs:
            rows = length + 1 if spec.name.startswith(PER_OBS) else length
            zarr_layout.write_array_metadata(partial / spec.name, rows, spec.shape, np.dtype(spec.dtype), job.chunk_steps)
        atomic_write(partial / schema.COMMITTED_NAME, json.dumps({"steps": length, "sealed": True}).encode(), durable=False)
        zarr_layout.write_group(partial, job.seal)
        journal = partial / schema.JOURNAL_NAME
        if job.journal_bytes >= 0 and journal.exists():
            fd = os.open(journal, os.O_RDWR)
            try:
                os.ftruncate(fd, job.journal_bytes)
                os.fsync(fd)
            finally:
                os.close(fd)
        os.rename(partial, sealed)
        dir_fd = os.open(sealed.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        # The sealed arrays now hold every action and timestamp: the write-ahead journal has done its job.
        (sealed / schema.JOURNAL_NAME).unlink(missing_ok=True)
        log.info("sealed %s (%d steps, %s)", sealed.name, length, job.seal["end_reason"])
