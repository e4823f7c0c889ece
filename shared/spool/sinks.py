"""Where chunk jobs go: a writer process (play) or a writer thread (recovery, tests).

Why a process: on a 2-core machine a writer *thread* convoys with the game loop on the GIL. Every
syscall either side makes hands the GIL over, and getting it back waits for the other side's
Python work; measured, recording ran at 0.62 of raw env speed. In a process, the game loop only
copies rows into shared memory and sends a small message per chunk.

Both transports share the bookkeeping here: chunk buffers ("slots") are recycled once their job is
done; agents wait for a free slot (backpressure), humans never do (a new slot is made instead).

A sink is a context manager, like huggingface_hub's ``CommitScheduler``: leaving the ``with`` block
drains every job already submitted, then stops the writer::

    with Sink(process=True) as sink:
        writer = EpisodeWriter.create(spool, attrs, sink)
"""

from __future__ import annotations

import logging
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from gymrec.shared.spool.buffers import SHM_DIR, Buffers, remove_dead
from gymrec.shared.spool.chunk_store import ArraySpec, ChunkJob, ChunkStore

log = logging.getLogger(__name__)
Failure = tuple[int, str]  # (errno, message): picklable, turned into a typed error by the writer
DIED = (0, "the writer process stopped unexpectedly")
_ALIGN = 64
_POLL_SECONDS = 0.1
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@dataclass
class Slot:
    key: str  # the buffer's path for the writer process; a local name for a thread sink
    layout: tuple[tuple[str, int, tuple[int, ...], str], ...]  # (name, offset, chunk shape, dtype)
    arrays: dict[str, np.ndarray]


def _layout(specs: tuple[ArraySpec, ...], chunk_steps: int) -> tuple[tuple[tuple[str, int, tuple[int, ...], str], ...], int]:
    out, offset = [], 0
    for spec in specs:
        shape = (chunk_steps, *spec.shape)
        out.append((spec.name, offset, shape, spec.dtype))
        offset += -(-int(np.prod(shape)) * np.dtype(spec.dtype).itemsize // _ALIGN) * _ALIGN
    return tuple(out), max(offset, _ALIGN)


def views(buffer: Any, layout: tuple[tuple[str, int, tuple[int, ...], str], ...]) -> dict[str, np.ndarray]:
    return {name: np.ndarray(shape, dtype=dtype, buffer=buffer, offset=off) for name, off, shape, dtype in layout}


class Sink:
    def __init__(self, process: bool, max_slots: int = 8, spill_dir: Path | None = None) -> None:
        """``spill_dir``: where chunk buffers go when ``/dev/shm`` is too small (the CLI edge passes the temp
        dir; None keeps them in ``/dev/shm``, reserve or not)."""
        self._process = process
        self._max_slots = max_slots
        self._cond = threading.Condition()
        self._pending: Counter[str] = Counter()
        self._failures: dict[str, Failure] = {}
        self._free: dict[tuple[Any, ...], list[Slot]] = {}
        self._made: dict[tuple[Any, ...], int] = Counter()
        self._in_flight: dict[str, tuple[Slot, tuple[Any, ...]]] = {}
        # Pid plus randomness: a recycled pid must never meet a dead recorder's slots.
        self._tag = f"{os.getpid()}_{secrets.token_hex(4)}"
        spill = spill_dir if spill_dir is not None else SHM_DIR
        self._buffers = Buffers(self._tag, spill)
        self._closed = False
        if process:
            remove_dead((SHM_DIR, spill))
            # A plain ``python -m`` child, not multiprocessing: spawn would re-import the caller's
            # __main__, which fails for scripts fed on stdin and is slow for big ones.
            jobs_r, jobs_w = os.pipe()
            results_r, results_w = os.pipe()
            # Born with Ctrl-C and SIGTERM blocked (a signal mask survives exec) until it ignores them
            # (writer_process.serve): a Ctrl-C to the process group while it still imports (~0.4 s,
            # seconds on a loaded machine) killed it, and with it the recorder's sealing.
            previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
            try:
                self._child = subprocess.Popen(
                    [sys.executable, "-m", "gymrec.shared.spool.writer_process", str(jobs_r), str(results_w), self._tag,
                     str(spill)],
                    pass_fds=(jobs_r, results_w), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                )
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
            os.close(jobs_r)
            os.close(results_w)
            self._jobs_out = Connection(jobs_w, readable=False)
            # The game thread reads the writer's results itself, when it needs a slot or an answer:
            # a results thread had to win the GIL back from the game loop for every chunk (a forced
            # switch each time, and a wake-up on the core the writer process runs on).
            self._results_in = Connection(results_r, writable=False)
            # One reader of the results at a time: a Ray actor's thread waits for an episode's seal
            # while another plays the next episode into the same sink (recorder.cluster.actor).
            self._reading = threading.Lock()
            self._writer_gone = False
        else:
            self._queue: queue.SimpleQueue[tuple[ChunkJob, Slot | None] | None] = queue.SimpleQueue()
            self._store = ChunkStore()
            self._worker = threading.Thread(target=self._work, name="gymrec-writer", daemon=True)
            self._worker.start()

    # --- slots --------------------------------------------------------------------------------

    def slot(self, specs: tuple[ArraySpec, ...], chunk_steps: int, block: bool) -> Slot:
        key = (specs, chunk_steps)
        self._collect(block=False)
        with self._cond:
            while True:
                free = self._free.setdefault(key, [])
                if free:
                    return free.pop()
                if not block or self._made[key] < self._max_slots:
                    self._made[key] += 1
                    break
                self._await()
        layout, size = _layout(specs, chunk_steps)
        if not self._process:
            return Slot(f"local-{id(layout)}-{self._made[key]}", layout, views(bytearray(size), layout))
        try:
            buffer = self._buffers.create(size)
        except OSError:
            with self._cond:
                self._made[key] -= 1
            raise
        return Slot(str(buffer.path), layout, views(buffer.map, layout))

    def _release(self, slot_key: str | None, partial: str, failure: Failure | None) -> None:
        with self._cond:
            self._pending[partial] -= 1
            if failure is not None:
                self._failures.setdefault(partial, failure)
            entry = self._in_flight.pop(slot_key, None) if slot_key is not None else None
            if entry is not None:
                self._free.setdefault(entry[1], []).append(entry[0])
            self._cond.notify_all()

    # --- jobs ---------------------------------------------------------------------------------

    def submit(self, job: ChunkJob, slot: Slot | None) -> None:
        """Hand a job over; ``slot`` None for a job without rows (a sync request)."""
        key = slot.key if slot is not None else None
        with self._cond:
            self._pending[job.partial] += 1
            if slot is not None:
                self._in_flight[slot.key] = (slot, (job.specs, job.chunk_steps))
        if self._process:
            try:
                self._jobs_out.send((job, key, slot.layout if slot is not None else ()))
            except OSError:
                self._release(key, job.partial, DIED)
        else:
            self._queue.put((job, slot))

    @property
    def child_pid(self) -> int | None:
        return self._child.pid if self._process else None

    def guard(self, pids: list[tuple[int, float]]) -> None:
        """Ask the writer process to kill these (pid, start time) if the recorder dies unannounced.

        VizDoom runs its engine as a child process that a SIGKILLed recorder would leave running.
        """
        if self._process and pids:
            try:
                self._jobs_out.send(("guard", pids))
            except OSError:
                pass

    def failure(self, partial: str) -> Failure | None:
        self._collect(block=False)
        with self._cond:
            return self._failures.get(partial)

    def wait(self, partial: str) -> Failure | None:
        """Until every job of ``partial`` is done; returns its failure, if any."""
        with self._cond:
            while self._pending[partial] > 0:
                self._await()
            self._pending.pop(partial, None)
            return self._failures.get(partial)

    def _await(self) -> None:
        """Wait (holding ``_cond``) until some job is done: a result read from the writer process,
        or the writer thread's notification."""
        if not self._process:
            self._cond.wait()
            return
        self._cond.release()
        try:
            self._collect(block=True)
        finally:
            self._cond.acquire()

    def _collect(self, block: bool) -> None:
        """Apply the writer process's results: those already there, or (``block``) wait a moment for one.

        Callers re-check what they wait for after a blocking call: another thread may have read the
        result they needed (it applies it under ``_cond``), so a blocking call gives up after a poll.
        """
        if not self._process or self._writer_gone:
            return
        if not self._reading.acquire(timeout=_POLL_SECONDS if block else 0):
            return  # another thread is reading: it applies what arrives
        try:
            # A timed poll, so Ctrl-C still interrupts a wait for the writer (it lands here, never
            # inside a message: see _apply_one).
            if not self._results_in.poll(_POLL_SECONDS if block else 0):
                return
            while True:
                self._apply_one()
                if not self._results_in.poll(0):
                    return
        except (EOFError, OSError):
            self._writer_gone = True
            with self._cond:
                for partial in [p for p, n in self._pending.items() if n > 0]:
                    self._failures.setdefault(partial, DIED)
                    self._pending[partial] = 0
                self._cond.notify_all()
        finally:
            self._reading.release()

    def _apply_one(self) -> None:
        # Stop signals wait until the result is read and applied: a KeyboardInterrupt between a
        # message's bytes would garble the pipe, one before _release would leave a job pending forever.
        # The message is already there (one small write, atomic), so the signal waits microseconds.
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            slot_key, partial, failure = self._results_in.recv()
            self._release(slot_key, partial, failure)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous)

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Finish every job handed over, stop the writer and free the slots (idempotent)."""
        if self._closed:
            return
        self._closed = True
        if self._process:
            try:
                self._jobs_out.send(None)
            except OSError:
                pass
            while not self._writer_gone:  # every result, until the writer's end of the pipe closes
                self._collect(block=True)
            self._child.wait()
            self._jobs_out.close()
            self._results_in.close()
        else:
            self._queue.put(None)
            self._worker.join()
        self._free.clear()
        self._in_flight.clear()
        self._buffers.close()

    # --- the two transports -------------------------------------------------------------------

    def _work(self) -> None:
        while (item := self._queue.get()) is not None:
            job, slot = item
            try:
                self._store.run(job, slot.arrays if slot is not None else {})
                failure = None
            except OSError as e:
                failure = (e.errno or 0, str(e))
                self._store.forget(job.partial)
            self._release(slot.key if slot is not None else None, job.partial, failure)
        self._store.close()
