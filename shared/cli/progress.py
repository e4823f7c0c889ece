"""Progress of long runs (agent recording, ``gymrec-replay --all``): episodes done, steps/s, ETA.

A tqdm bar on a terminal; nothing at all when the stream is not one (pipes, logs, tests), so
output meant for scripts stays exactly as it was. Counting is cheap (an int add a step); the bar
redraws at most every ``REFRESH`` seconds.
"""

from __future__ import annotations

import time
from typing import IO, Protocol

REFRESH = 0.5  # seconds between redraws


class Progress(Protocol):
    def steps(self, count: int) -> None:
        """``count`` more steps were played or replayed."""

    def episode(self) -> None:
        """One more episode is done."""

    def close(self) -> None: ...


class NoProgress:
    def steps(self, count: int) -> None:
        pass

    def episode(self) -> None:
        pass

    def close(self) -> None:
        pass


class BarProgress:
    """A tqdm bar counting episodes (so tqdm's ETA is per episode), with steps/s beside it."""

    def __init__(self, stream: IO[str], total_episodes: int | None, label: str) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total_episodes, unit="ep", desc=label, file=stream, dynamic_ncols=True,
                         mininterval=REFRESH, bar_format="{desc}: {n_fmt}/{total_fmt} ep |{bar}| {postfix} [{elapsed}<{remaining}]")
        self._started = time.monotonic()
        self._steps = 0
        self._shown = 0.0

    def steps(self, count: int) -> None:
        self._steps += count
        now = time.monotonic()
        if now - self._shown >= REFRESH:
            self._show(now)

    def _show(self, now: float) -> None:
        self._shown = now
        rate = self._steps / max(now - self._started, 1e-9)
        self._bar.set_postfix_str(f"{self._steps:,} steps, {rate:,.0f} steps/s", refresh=False)
        self._bar.refresh()

    def episode(self) -> None:
        self._bar.update(1)
        self._show(time.monotonic())

    def close(self) -> None:
        self._show(time.monotonic())
        self._bar.close()


def progress_for(stream: IO[str], total_episodes: int | None, label: str) -> Progress:
    """A bar when ``stream`` is a terminal, else nothing."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None or not isatty():
        return NoProgress()
    return BarProgress(stream, total_episodes, label)

