"""The writer process: ``python -m recorder.writer_process JOBS_FD RESULTS_FD``.

It runs chunk jobs from the recorder in order, reading rows from shared memory. When the recorder
dies, the pipe reports EOF only after every job already sent, so chunks the game handed over are
still written and committed: a SIGKILL of the recorder leaves less for recovery to rebuild. It holds
each episode's ``writer.lock`` shared while it writes, so recovery waits for it too.
"""

from __future__ import annotations

import signal
import sys
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

from recorder.chunk_store import ChunkStore
from recorder.sinks import Failure, views
from shared import schema
from shared.spool import WriterLock


def _attach(name: str) -> SharedMemory:
    shm = SharedMemory(name=name)
    # Python 3.11 registers an attached segment with this process's own resource tracker, which
    # would unlink the recorder's segments when this process exits. The recorder owns them.
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]
    return shm


def serve(jobs: Connection, results: Connection) -> None:
    """Run jobs until told to stop or the recorder is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the recorder's to handle; it then seals
    store = ChunkStore()
    attached: dict[str, SharedMemory] = {}
    locks: dict[str, WriterLock] = {}
    failed: dict[str, Failure] = {}
    while True:
        try:
            message = jobs.recv()
        except (EOFError, OSError):
            break
        if message is None:
            break
        job, slot_key, layout = message
        failure = failed.get(job.partial)
        if failure is None and job.partial not in locks:
            lock = WriterLock(Path(job.partial) / schema.LOCK_NAME, shared=True)
            if lock.try_acquire():
                locks[job.partial] = lock
            else:
                failure = (0, "the episode was taken over by crash recovery")
        if failure is None:
            if slot_key not in attached:
                attached[slot_key] = _attach(slot_key)
            try:
                store.run(job, views(attached[slot_key].buf, layout))
            except OSError as e:
                failure = (e.errno or 0, str(e))
        if failure is not None:
            failed[job.partial] = failure
        if (job.seal is not None or failure is not None) and job.partial in locks:
            locks.pop(job.partial).release()
        try:
            results.send((slot_key, job.partial, failure))
        except OSError:
            pass  # the recorder is gone; keep writing what it sent
    for lock in locks.values():
        lock.release()
    for shm in attached.values():
        shm.close()


def main() -> None:
    jobs_fd, results_fd = int(sys.argv[1]), int(sys.argv[2])
    serve(Connection(jobs_fd, writable=False), Connection(results_fd, readable=False))


if __name__ == "__main__":
    main()
