"""Per-episode quality fields of human play, computed at sealing and stored as episode attributes.

They let a researcher (and the uploader's ``--min-active``) tell play from an idle window:

- ``active_fraction``: steps on which any game key or button was held or pressed, over all steps;
- ``inputs_per_minute``: key and button presses per minute of play (pauses excluded);
- ``longest_idle_s``: the longest run of steps without input, in seconds of play;
- ``paused_s``: seconds spent paused (P or the F1 help);
- ``late_frames`` and ``worst_late_ms``: recorded steps whose frame period ended more than
  ``recorder.clock.LATE_S`` after its deadline (the next frame went up that late), and the worst miss.

Every field counts recorded steps only: pause, help, rewind, start-gate and end-screen ticks are not
steps, so ``late_frames <= length``. A branch starts a tracker of its own at the step it branches
from: the parent's prefix it copies is not play.

Seconds of play are steps divided by the episode's fps: the pace the game ran at, independent of
how long a step's frame stayed up in step mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gymrec.recorder.clock import LATE_S

QUALITY_FIELDS = ("active_fraction", "inputs_per_minute", "longest_idle_s", "paused_s", "late_frames",
                  "worst_late_ms")


@dataclass
class QualityTracker:
    """Fed once per step by the human controller."""

    fps: float
    steps: int = 0
    active: int = 0
    presses: int = 0
    paused_s: float = 0.0
    late_frames: int = 0
    worst_late_s: float = 0.0
    _idle_run: int = 0
    _longest_idle: int = 0

    def step(self, active: bool, paused_s: float = 0.0, late_s: float = 0.0) -> None:
        self.steps += 1
        self.paused_s += paused_s
        if late_s > LATE_S:
            self.late_frames += 1
            self.worst_late_s = max(self.worst_late_s, late_s)
        if active:
            self.active += 1
            self._idle_run = 0
        else:
            self._idle_run += 1
            self._longest_idle = max(self._longest_idle, self._idle_run)

    def fields(self) -> dict[str, Any]:
        play_s = self.steps / self.fps if self.fps > 0 else 0.0
        return {
            "active_fraction": round(self.active / self.steps, 4) if self.steps else 0.0,
            "inputs_per_minute": round(self.presses / (play_s / 60), 2) if play_s > 0 else 0.0,
            "longest_idle_s": round(self._longest_idle / self.fps, 3) if self.fps > 0 else 0.0,
            "paused_s": round(self.paused_s, 3),
            "late_frames": self.late_frames,
            "worst_late_ms": round(self.worst_late_s * 1000, 2),
        }
