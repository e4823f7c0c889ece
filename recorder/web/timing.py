"""The browser's clock on the server's, and one episode's network and display figures.

The page stamps with ``performance.now()`` (ms since the page loaded); the spool's ``shown_ns`` and
``decided_ns`` are the server's ``time.monotonic_ns()``. Every frame's acknowledgement is one
NTP-style exchange: the server sent the frame at ``s0`` and got the ack at ``s1``; the page got the
frame at ``recv`` and sent the ack at ``sent``. Then

    round trip = (s1 - s0) - (sent - recv)       offset = ((s0 + s1) - (recv + sent)) / 2

and the offset of the exchange with the shortest round trip so far is the best one (it had the least
room for asymmetric delay), so browser times map to the server's clock within half that round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MS = 1_000_000  # ns


@dataclass
class ClockSync:
    best_rtt_ns: int | None = None
    offset_ns: float = 0.0

    def exchange(self, s0_ns: int, s1_ns: int, recv_ms: float, sent_ms: float) -> int:
        """Take one acknowledgement; return its network round trip (ns, never negative)."""
        held_ns = max(0.0, (sent_ms - recv_ms) * MS)
        rtt = max(0, int((s1_ns - s0_ns) - held_ns))
        if self.best_rtt_ns is None or rtt <= self.best_rtt_ns:
            self.best_rtt_ns = rtt
            self.offset_ns = (s0_ns + s1_ns) / 2 - (recv_ms + sent_ms) * MS / 2
        return rtt

    def to_server_ns(self, browser_ms: float) -> int:
        return int(browser_ms * MS + self.offset_ns)


@dataclass
class EpisodeTiming:
    """Per step: round trip, and the page's display and decision times (its own clock, ms)."""

    fps: float
    rtt_ns: list[int] = field(default_factory=list)
    shown_ms: list[float] = field(default_factory=list)
    decided_ms: list[float] = field(default_factory=list)

    def step(self, rtt_ns: int, shown_ms: float, decided_ms: float) -> None:
        self.rtt_ns.append(rtt_ns)
        self.shown_ms.append(shown_ms)
        self.decided_ms.append(decided_ms)

    def interval_errors_ms(self) -> np.ndarray:
        """|interval between two frames going up - the period|, per pair of steps."""
        shown = np.asarray(self.shown_ms, dtype=np.float64)
        return np.abs(np.diff(shown) - 1000.0 / self.fps) if shown.size > 1 else np.zeros(0)

    def fields(self) -> dict[str, Any]:
        """The episode attributes: per-episode figures and the per-step arrays (µs, from the first frame)."""
        if not self.rtt_ns:
            return {}
        rtt_ms = np.asarray(self.rtt_ns, dtype=np.float64) / MS
        errors = self.interval_errors_ms()
        origin = self.shown_ms[0]
        return {
            "rtt_p50_ms": round(float(np.percentile(rtt_ms, 50)), 3),
            "rtt_p99_ms": round(float(np.percentile(rtt_ms, 99)), 3),
            "display_p99_error_ms": round(float(np.percentile(errors, 99)), 3) if errors.size else 0.0,
            "browser_timing": {
                "rtt_us": [round(r / 1000) for r in self.rtt_ns],
                "shown_us": [round((s - origin) * 1000) for s in self.shown_ms],
                "decided_us": [round((d - origin) * 1000) for d in self.decided_ms],
            },
        }
