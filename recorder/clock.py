"""Fixed-rate pacing for the game loop.

Deadline-based: each tick's deadline is the previous deadline plus one period, whatever the work in
between took, so the rate does not drift the way "sleep one period after the work" does. A tick that
is more than ``max_late_periods`` late resynchronises to now instead of bursting through the missed
ticks (a human cannot play a game fast-forwarded to catch up). ``time.sleep`` overshoots, by a few
milliseconds when both cores are busy, so the last ``spin`` seconds are spent yielding in a loop to
hit the deadline: on the 2-core dev box under load a 1 ms spin gave a p99 lateness of ~2.2 ms at
60 Hz, 2 ms gave ~0.6 ms.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger(__name__)
# Input events are stamped when taken off SDL's queue, so the slice bounds how late an input-log time
# can be: 4 ms slices put the pixel bot's measured reaction times 4.5 ms (median) behind its own
# clock at 15 Hz; 1 ms slices cost ~15 extra event polls a 60 Hz frame (~10 us each).
IDLE_SLICE_S = 0.001
# A step's frame goes up this far into the period after its tick, not as soon as the step ends: a
# quarter period, at most 4 ms, covers the env step and the spool write of nearly every step (they
# took 1.7-2.8 ms median on the loaded 2-core box), so frames go up at a steady phase. The cap keeps
# short the time the previous frame stays up while input already counts for the next action. Drawing at once put the real-window p99 frame-interval error at
# 4.7 ms (P2X; 0.9 ms before the pairing fix drew right at the tick); a slot that followed recent
# step times moved the phase itself and did no better (3.8-4.5 ms).
SLOT_PERIODS = 0.25
SLOT_MAX_S = 0.004
# A frame shown more than this after its deadline counts as late: half a 60 Hz frame, where a
# person starts to see judder. The clock only reports lateness: the human controller counts it on
# recorded steps (recorder.quality), never on pause, help, rewind or end-screen ticks.
LATE_S = 0.008


class FixedRateClock:
    """Call ``wait()`` once per tick; it returns when the tick is due and says how late it was."""

    def __init__(
        self,
        fps: float,
        now: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
        *,
        spin: float = 0.002,
        max_late_periods: float = 2.0,
        history: int = 120,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps_target = float(fps)
        self.period = 1.0 / self.fps_target
        self.now = now
        self._sleep = sleep
        self._spin = spin
        self._max_late = max_late_periods * self.period
        self._deadline: float | None = None
        self._ticks: deque[float] = deque(maxlen=max(2, history))
        self.resyncs = 0
        # Called every IDLE_SLICE_S while waiting (the window takes input events off SDL's queue, so
        # their timestamps are a few ms late at most instead of up to a whole tick).
        self.idle: Callable[[], None] | None = None
        # How long after its tick a step's frame goes up (``show_slot``): a fixed phase of the period.
        self._slot = min(self.period * SLOT_PERIODS, SLOT_MAX_S)

    def wait(self, not_before: float | None = None) -> float:
        """Block until this tick's deadline; return its lateness in seconds (0 for the first tick).

        ``not_before`` (on ``now``'s clock): the tick ends no earlier than that even when the schedule
        says it is due. The window passes the moment its frame went up plus half a period: a frame
        drawn late (a slow env step) still stays up long enough to be answered, and the schedule
        shifts by the difference instead of squeezing the frame. Without it, 0-2.5 % of frames were
        up for less than half a period on the loaded 2-core box (8-10 % with a busy second core).
        """
        t = self.now()
        if self._deadline is None:
            if not_before is None:
                self._deadline = t + self.period
                self._ticks.append(t)
                return 0.0
            self._deadline = not_before
        deadline = self._deadline if not_before is None else max(self._deadline, not_before)
        while deadline - t > self._spin:
            if self.idle is None:
                self._sleep(deadline - t - self._spin)
                t = self.now()
                break
            self._sleep(min(IDLE_SLICE_S, deadline - t - self._spin))
            self.idle()
            t = self.now()
        while t < deadline:
            self._sleep(0)  # sleep(0) releases the GIL, so the spool writer thread runs meanwhile
            t = self.now()
        late = t - deadline
        if late > self._max_late:
            log.debug("clock %.1f ms late, resynchronising", late * 1000)
            self.resyncs += 1
            self._deadline = t + self.period
        else:
            self._deadline = deadline + self.period
        self._ticks.append(t)
        return late

    def show_slot(self) -> None:
        """Wait until the frame of the step just taken should go up: ``SLOT_PERIODS`` after the last tick.

        A frame drawn as soon as its step ends goes up as irregularly as steps take (a chunk handed to
        the writer, a slow env step); at a fixed phase it goes up on the schedule unless the step
        overran the slot. Input arriving meanwhile is stamped and queued as usual (it is the next
        action's: the frame before is still on screen, as during the step itself).
        """
        if not self._ticks:
            return
        last = self._ticks[-1]
        t = self.now()
        target = last + self._slot
        while target - t > self._spin:
            self._sleep(min(IDLE_SLICE_S, target - t - self._spin))
            if self.idle is not None:
                self.idle()
            t = self.now()
        while t < target:  # the last ``spin`` yielding, as ``wait`` does: sleep overshoots
            self._sleep(0)
            t = self.now()

    def restart(self) -> None:
        """Forget the schedule, e.g. after a long blocking call, so the next tick is not late."""
        self._deadline = None
        self._ticks.clear()

    def measured_fps(self) -> float:
        """Ticks per second over the recent history (0 until two ticks have happened)."""
        if len(self._ticks) < 2:
            return 0.0
        span = self._ticks[-1] - self._ticks[0]
        return (len(self._ticks) - 1) / span if span > 0 else 0.0
