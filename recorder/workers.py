"""``gymrec-play --workers N``: N recorder processes for agents, each with its own env and writer.

All of them write into one spool (episode directories are named by UUID, so they never meet).
Worker ``i`` records its share of ``--episodes`` with a seed derived from ``--seed`` and ``i``
(``SeedSequence(seed).spawn(N)[i]``), so the same ``--seed`` and ``--workers`` record the same
episodes. Workers are plain ``python -m`` children, like the writer process: a worker ignores
SIGINT and stops on SIGTERM, which this parent sends to every worker when it is interrupted itself
(Ctrl-C reaches the whole process group; SIGTERM only the parent). Signals only set flags, acted on
at a step boundary: a worker ends its episode as Esc would, so every episode is sealed, or, if a
worker is killed outright, left to recovery (which the parent runs after an interrupted run).

A worker reports on stdout, one event a line: ``steps N``, ``episode``, ``sealed PATH`` (kept),
``discarded PATH``, ``total N`` (the kept episodes' steps).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.tracked_source import StopRequest, TrackedSource
from gymrec.shared.cli.edge import EXIT_INTERRUPTED
from gymrec.shared.cli.progress import Progress

if TYPE_CHECKING:
    from gymrec.recorder.session import Sealing, SessionResult

SEED_SPACE = 2**31 - 1
_STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})


@dataclass
class WorkersResult:
    sealed: list[Path] = field(default_factory=list)  # kept episodes
    discarded: list[Path] = field(default_factory=list)  # sealed as discarded: not counted
    steps: int = 0  # the kept episodes' steps
    failed: list[tuple[int, str]] = field(default_factory=list)  # (exit code, stderr) of failed workers
    interrupted: bool = False


def plan(config: PlayConfig, workers: int) -> list[PlayConfig]:
    """Each worker's config: its share of the episodes and its own seed; workers without one are left out."""
    total = int(config.episodes or 1)
    shares = [total // workers + (1 if i < total % workers else 0) for i in range(workers)]
    seeds: list[int | None] = [None] * workers
    if config.seed is not None:
        seeds = [int(s.generate_state(1)[0]) % SEED_SPACE for s in np.random.SeedSequence(config.seed).spawn(workers)]
    return [dataclasses.replace(config, episodes=n, seed=s) for n, s in zip(shares, seeds, strict=True) if n > 0]


def _encode(config: PlayConfig) -> str:
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["spool"] = str(config.spool)
    fields["env_kwargs"] = dict(config.env_kwargs)
    fields["keymap_path"] = None
    fields["spill_dir"] = None if config.spill_dir is None else str(config.spill_dir)
    return json.dumps(fields)


def _decode(text: str) -> PlayConfig:
    fields: dict[str, Any] = json.loads(text)
    fields["spool"] = Path(fields["spool"])
    fields["spill_dir"] = None if fields.get("spill_dir") is None else Path(fields["spill_dir"])
    return PlayConfig(**fields)


class _Worker:
    def __init__(self, index: int, config: PlayConfig, events: queue.SimpleQueue[tuple[int, str | None]]) -> None:
        self.index = index
        # Born with SIGINT and SIGTERM blocked (a signal mask survives exec): one sent while the
        # worker is still importing waits until it has its stop handler, instead of killing it.
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gymrec.recorder.workers", _encode(config)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
        self.stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        name = f"gymrec-worker-{index}"
        self._threads = [
            threading.Thread(target=self._events, args=(self.process.stdout, events), name=name + "-events", daemon=True),
            threading.Thread(target=self._collect, args=(self.process.stderr,), name=name + "-stderr", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _events(self, stream: IO[str], events: queue.SimpleQueue[tuple[int, str | None]]) -> None:
        for line in stream:
            events.put((self.index, line.rstrip("\n")))
        events.put((self.index, None))

    def _collect(self, stream: IO[str]) -> None:
        self.stderr.extend(stream)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def join(self) -> int:
        code = self.process.wait()
        for thread in self._threads:
            thread.join()
        return code


def run_workers(configs: list[PlayConfig], progress: Progress) -> WorkersResult:
    """Run one worker per config until all have ended; SIGINT/SIGTERM stop them all, once."""
    events: queue.SimpleQueue[tuple[int, str | None]] = queue.SimpleQueue()
    result = WorkersResult()
    workers: list[_Worker] = []
    stop = StopRequest()
    # A KeyboardInterrupt could land anywhere here (even in an except clause); a flag cannot.
    previous = {sig: signal.signal(sig, stop.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for i, config in enumerate(configs):
            workers.append(_Worker(i, config, events))
        ended = 0
        while ended < len(workers):
            if stop.requested and not result.interrupted:
                result.interrupted = True
                for worker in workers:
                    worker.stop()
            try:
                _, line = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if line is None:
                ended += 1
            else:
                _apply(line, result, progress)
    finally:
        if running_any(workers):  # this parent failed: never leave workers behind
            for worker in workers:
                worker.stop()
        for worker in workers:
            code = worker.join()
            # Stopped outside its step loop, a worker leaves its episode to recovery: not a failure.
            if code != 0 and not (result.interrupted and code == EXIT_INTERRUPTED):
                result.failed.append((code, "".join(worker.stderr)))
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return result


def running_any(workers: list[_Worker]) -> bool:
    return any(w.process.poll() is None for w in workers)


def _apply(line: str, result: WorkersResult, progress: Progress) -> None:
    kind, _, value = line.partition(" ")
    if kind == "steps":
        progress.steps(int(value))
    elif kind == "episode":
        progress.episode()
    elif kind == "sealed":
        result.sealed.append(Path(value))
    elif kind == "discarded":
        result.discarded.append(Path(value))
    elif kind == "total":
        result.steps += int(value)


class LineProgress:
    """A worker's side of the progress: events on stdout for the parent, a few lines a second."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._steps = 0

    def steps(self, count: int) -> None:
        self._steps += count
        if self._steps >= 4096:
            self._flush()

    def _flush(self) -> None:
        if self._steps:
            self._stream.write(f"steps {self._steps}\n")
            self._stream.flush()
            self._steps = 0

    def episode(self) -> None:
        self._flush()
        self._stream.write("episode\n")
        self._stream.flush()

    def close(self) -> None:
        self._flush()


class AgentRecorder:
    """An agent's env and writer process, kept across sessions: a worker records one session with it,
    a Ray actor (``recorder.cluster.actor``) one per planned episode."""

    def __init__(self, config: PlayConfig) -> None:
        from gymrec.shared.envs.backends import make_env
        from gymrec.shared.spool.sinks import Sink

        with contextlib.ExitStack() as stack:  # a failing make_env stops the writer process again
            # The writer process first: its start-up overlaps the env's (Session.run).
            self.sink = stack.enter_context(Sink(process=True, spill_dir=config.spill_dir))
            self.made = make_env(config.env_id, dict(config.env_kwargs))
            stack.callback(self.made.env.close)  # closed before the sink (LIFO)
            self._stack = stack.pop_all()

    def record(self, config: PlayConfig, progress: Progress, stop: StopRequest) -> SessionResult:
        return self.play(config, progress, stop).wait()

    def play(self, config: PlayConfig, progress: Progress, stop: StopRequest) -> Sealing:
        """Play ``config``'s episodes; the last ones may still be sealing (``Sealing.wait``)."""
        from gymrec.recorder.play_source import action_source
        from gymrec.recorder.session import Session

        source = None
        try:
            source = TrackedSource(action_source(config, self.made), progress, stop)
            return Session(config, self.made, source).play(self.sink)
        finally:
            if source is not None:
                source.close()

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> AgentRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _worker_main(encoded: str) -> None:
    config = _decode(encoded)
    out = sys.stdout
    stop = StopRequest()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop: it sends SIGTERM
    signal.signal(signal.SIGTERM, stop.handler)  # stop at the next step, as Esc would
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # blocked since birth (see _Worker)
    progress = LineProgress(out)
    with AgentRecorder(config) as recorder:
        result = recorder.record(config, progress, stop)
    progress.close()
    for path in result.sealed:
        out.write(f"{'discarded' if path in result.discarded else 'sealed'} {path}\n")
    out.write(f"total {result.steps}\n")
    out.flush()


if __name__ == "__main__":
    from gymrec.shared.cli.edge import cli_edge

    cli_edge("gymrec-play")(_worker_main)(sys.argv[1])
