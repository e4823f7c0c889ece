"""Ctrl-C and SIGTERM for a single-process recording: stop like Esc, but never in the middle of a step.

A step is several things that must all happen or none: journal the action, step the env, store the
outcome, remember the observation the env returned. A ``KeyboardInterrupt`` raised between two of
them would seal an episode whose final observation is not the env's after its last kept step, and
that episode would fail its own replay. So while a step is under way (``critical``), a stop signal
is only noted, and raised as ``KeyboardInterrupt`` the moment the step is whole (``leave``).
Outside a step (waiting for the next frame, an agent thinking, the start screen) it is raised at
once, as Python's default handler would.

The CLI owns the handlers (``install``); a ``Session`` without one uses an ``Interrupts`` that no
signal reaches, so the step loop is the same either way. Everything here runs in the main thread:
Python runs signal handlers there, between bytecodes, so the two flags need no lock.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

Handler = Callable[[int, Any], Any] | int | None


class Interrupts:
    def __init__(self) -> None:
        self.critical = False  # a step is under way: a stop waits until it is whole
        self.pending = False  # a stop arrived during the step

    def handler(self, signum: int, frame: Any) -> None:
        if self.critical:
            self.pending = True
            return
        raise KeyboardInterrupt

    def __enter__(self) -> None:
        self.critical = True

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        """The step is whole: act on a stop that arrived during it (unless the step failed: that error
        ends the session anyway, and a stale stop must not hit a later one)."""
        self.critical = False
        if self.pending:
            self.pending = False
            if exc_type is None:
                raise KeyboardInterrupt

    def install(self) -> dict[int, Handler]:
        """Ctrl-C and SIGTERM go through ``handler`` from now on; returns the handlers they had."""
        return {sig: signal.signal(sig, self.handler) for sig in (signal.SIGINT, signal.SIGTERM)}
