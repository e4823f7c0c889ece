"""The writer process: ``python -m gymrec.shared.spool.writer_process JOBS_FD RESULTS_FD``.

It runs chunk jobs from the recorder in order, reading rows from shared memory. When the recorder
dies, the pipe reports EOF only after every job already sent, so chunks the game handed over are
still written and committed: a SIGKILL of the recorder leaves less for recovery to rebuild. It holds
each episode's ``writer.lock`` shared while it writes, so recovery waits for it too.
"""

from __future__ import annotations

import gc
import logging
import mmap
import signal
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import psutil

from gymrec.shared.spool import schema
from gymrec.shared.spool.buffers import SEGMENT_PREFIX, SHM_DIR, attach
from gymrec.shared.spool.chunk_store import ChunkStore
from gymrec.shared.spool.directory import WriterLock
from gymrec.shared.spool.sinks import Failure, views

log = logging.getLogger(__name__)


def _unlink_segments(tag: str, spill_dir: Path) -> None:
    for directory in (SHM_DIR, spill_dir):
        for path in directory.glob(f"{SEGMENT_PREFIX}{tag}_*") if directory.is_dir() else ():
            path.unlink(missing_ok=True)


def serve(jobs: Connection, results: Connection, tag: str, spill_dir: Path) -> None:
    """Run jobs until told to stop or the recorder is gone."""
    # Ctrl-C and SIGTERM (timeout, systemd, kill -- -PGID) reach the whole group: they are the
    # recorder's to handle, and it seals through us. We stop on its message or on its death.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked since birth (Sink)
    store = ChunkStore()
    attached: dict[str, mmap.mmap] = {}
    locks: dict[str, WriterLock] = {}
    failed: dict[str, Failure] = {}
    guarded: list[tuple[int, float]] = []
    while True:
        try:
            message = jobs.recv()
        except (EOFError, OSError):
            # The recorder died without saying goodbye: make what it handed over durable, then
            # stop what it left running and free its slots.
            _sync_all(store)
            _kill_orphans(guarded)
            _unlink_segments(tag, spill_dir)
            break
        if message is None:
            break
        if message[0] == "guard":
            guarded = list(message[1])
            continue
        job, slot_key, layout = message
        failure = failed.get(job.partial)
        if failure is None and job.partial not in locks:
            lock = WriterLock(Path(job.partial) / schema.LOCK_NAME, shared=True)
            if lock.try_acquire():
                locks[job.partial] = lock
            else:
                failure = (0, "the episode was taken over by crash recovery")
        if failure is None:
            try:
                if slot_key is not None and slot_key not in attached:
                    attached[slot_key] = attach(slot_key)
                store.run(job, views(attached[slot_key], layout) if slot_key is not None else {})
            except OSError as e:
                failure = (e.errno or 0, str(e))
        if failure is not None:
            failed[job.partial] = failure
            store.forget(job.partial)
        if (job.seal is not None or failure is not None) and job.partial in locks:
            locks.pop(job.partial).release()
        try:
            results.send((slot_key, job.partial, failure))
        except OSError:
            pass  # the recorder is gone; keep writing what it sent
    for lock in locks.values():
        lock.release()
    for buffer in attached.values():
        buffer.close()
    store.close()


def _sync_all(store: ChunkStore) -> None:
    try:
        store.sync_all()
    except OSError as e:  # nobody is left to tell: recovery works from what is on disk
        log.error("cannot sync the episodes a dead recorder left: %s", e)


def _kill_orphans(guarded: list[tuple[int, float]]) -> None:
    for pid, started in guarded:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - started) < 0.01:  # not a recycled pid
                process.kill()
        except psutil.Error:
            pass


def main() -> None:
    jobs_fd, results_fd, tag, spill_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    # What the imports made lives as long as the process: keep it out of the collector's passes,
    # which took ~9 % of this process's samples (perf, 40 Breakout episodes) with zarr loaded here.
    gc.freeze()
    serve(Connection(jobs_fd, writable=False), Connection(results_fd, readable=False), tag, spill_dir)


if __name__ == "__main__":
    main()
