"""An ``ActionSource`` that also reports progress and can be asked to stop: for agent runs.

It wraps the real source (``recorder.controllers``) and changes nothing it decides, except that
once a stop is requested (a signal handler sets the flag) the next step ends the episode as Esc
would: at a step boundary, never in the middle of a write.
"""

from __future__ import annotations

from typing import Any

from gymrec.recorder.controllers import ActionSource, Choice, EndChoice, StepView
from gymrec.shared.cli.progress import Progress
from gymrec.shared.spool.schema import EndReason

BATCH = 256  # steps counted between progress updates: one int add a step


class StopRequest:
    """Set by a signal handler, acted on by whoever polls it: never an exception mid-write."""

    def __init__(self) -> None:
        self.requested = False

    def handler(self, signum: int, frame: Any) -> None:
        self.requested = True


class TrackedSource:
    def __init__(self, inner: ActionSource, progress: Progress, stop: StopRequest | None = None) -> None:
        self.inner = inner
        self.progress = progress
        self.stop = stop if stop is not None else StopRequest()
        self._pending = 0

    @property
    def collector(self) -> str:
        return self.inner.collector

    @property
    def keymap(self) -> dict[str, Any] | None:
        return self.inner.keymap

    def begin(self, view: StepView) -> bool:
        return not self.stop.requested and self.inner.begin(view)

    def branch(self, view: StepView) -> None:
        self.inner.branch(view)

    def act(self, obs: Any, view: StepView) -> Choice:
        if self.stop.requested:
            return Choice(stop=EndReason.QUIT)
        self._pending += 1
        if self._pending >= BATCH:
            self.progress.steps(self._pending)
            self._pending = 0
        return self.inner.act(obs, view)

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        self.progress.steps(self._pending)
        self._pending = 0
        self.progress.episode()
        return self.inner.finish(view, end)

    def sealing_attrs(self) -> dict[str, Any]:
        return self.inner.sealing_attrs()

    def close(self) -> None:
        self.progress.steps(self._pending)
        self._pending = 0
        self.inner.close()
