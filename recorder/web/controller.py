"""A participant in a browser as the session's ``ActionSource``: frames out, acknowledgements and keys in.

The pairing contract over the network (docs/browser.md, docs/pairing.md): the session asks for
action t; this sends frame t and waits. The page draws it in ``requestAnimationFrame``, acknowledges
it with that frame's timestamp (``shown``), gathers keys and buttons while it stays up and sends them
as action t (``act``) when the frame's input window ends. The env steps only once action t is here,
so a network stall holds frame t on the participant's screen and the game waits: no step is ever
taken on a frame the participant did not see, and a late message for an older frame is dropped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from gymrec.recorder.choices import Choice, EndChoice, StepView
from gymrec.recorder.quality import QualityTracker
from gymrec.recorder.web.protocol import (
    KIND_GATE,
    KIND_OVER,
    pack_frame,
    pack_json,
    parse_page_message,
    step_keys,
)
from gymrec.recorder.web.timing import ClockSync, EpisodeTiming
from gymrec.shared.spool.schema import EndReason

if TYPE_CHECKING:
    import numpy as np

    from gymrec.shared.keymaps.action_resolver import ActionResolver

log = logging.getLogger(__name__)


class Channel(Protocol):
    """The pipe to the server (``multiprocessing.connection.Connection``)."""

    def send_bytes(self, buf: bytes) -> None: ...

    def recv_bytes(self) -> bytes: ...


class BrowserController:
    """One participant's keys and gamepad, in their browser, through ``channel``."""

    collector = "human"

    def __init__(self, channel: Channel, resolver: ActionResolver, keymap: dict[str, Any] | None) -> None:
        self.channel = channel
        self.resolver = resolver
        self.keymap = keymap  # stored with every episode, as gymrec-play's
        self.quit = False  # the participant left (quit, closed the page, the server went away)
        self.sync = ClockSync()
        self._quality = QualityTracker(fps=1.0)
        self._timing = EpisodeTiming(fps=1.0)
        self._inputs: set[str] = set()
        self._held: frozenset[str] = frozenset()
        self.dropped = 0  # messages that were malformed or for another frame

    def close(self) -> None:
        return None  # the channel belongs to the participant's process

    def send(self, message: dict[str, Any]) -> None:
        self._send(pack_json(message))

    def _send(self, data: bytes) -> None:
        try:
            self.channel.send_bytes(data)
        except OSError:  # the server went away: like the page closing, the episode is sealed as quit
            self.quit = True

    def _next(self) -> dict[str, Any] | None:
        """The page's next well-formed message; None when it left (quit, or the pipe closed)."""
        while not self.quit:
            try:
                raw = self.channel.recv_bytes()
            except (EOFError, OSError):
                self.quit = True
                return None
            message = parse_page_message(raw)
            if message is None:
                self.dropped += 1
                continue
            if message["type"] == "quit":
                self.quit = True
                return None
            return message
        return None

    def _wait_for(self, kind: str) -> bool:
        while (message := self._next()) is not None:
            if message["type"] == kind:
                return True
        return False

    def begin(self, view: StepView) -> bool:
        self._quality = QualityTracker(fps=view.fps_target)
        self._timing = EpisodeTiming(fps=view.fps_target)
        self._inputs, self._held = set(), frozenset()
        self._send(pack_frame(-1, view.frame, KIND_GATE))
        self.send({"type": "gate", "episode": view.episode, "fps": view.fps_target})
        return self._wait_for("start")

    def branch(self, view: StepView) -> None:
        return None  # the page offers no rewind

    def act(self, obs: Any, view: StepView) -> Choice:
        step = view.step
        sent_ns = time.monotonic_ns()
        self._send(pack_frame(step, view.frame))
        shown: dict[str, Any] | None = None
        act: dict[str, Any] | None = None
        rtt = 0
        # The page sends the ack, then the action, over one ordered WebSocket; either order is taken.
        while (message := self._next()) is not None:
            if message.get("t") != step or message["type"] not in ("shown", "act"):
                self.dropped += 1  # an older frame's ack or action (it acts on nothing now), or noise
            elif message["type"] == "shown":
                shown = message
                rtt = self.sync.exchange(sent_ns, time.monotonic_ns(), message["recv"], message["sent"])
            else:
                act = message
            if shown is not None and act is not None:
                return self._choice(act, shown, rtt)
        return Choice(stop=EndReason.QUIT, shown_ns=self.sync.to_server_ns(shown["shown"]) if shown else 0,
                      decided_ns=time.monotonic_ns())

    def _choice(self, act: dict[str, Any], shown: dict[str, Any], rtt_ns: int) -> Choice:
        keys = step_keys(act["keys"])
        self._quality.presses += len(keys - self._held)
        self._held = keys
        self._inputs.update("gamepad" if k.startswith("pad ") else "keyboard" for k in keys)
        self._quality.step(bool(keys))
        self._timing.step(rtt_ns, shown["shown"], act["decided"])
        return Choice(self.resolver(keys), shown_ns=self.sync.to_server_ns(shown["shown"]),
                      decided_ns=self.sync.to_server_ns(act["decided"]))

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        self._send(pack_frame(-1, view.frame, KIND_OVER))
        self.send({"type": "over", "episode": view.episode, "return": view.episode_return, "steps": view.step})
        return EndChoice(quit=not self._wait_for("next"))

    def rewind(self, frames: Iterator[tuple[int, np.ndarray]], view: StepView,
               view_at: Callable[[int], StepView]) -> int | None:
        return view.step  # the page never asks to rewind

    def sealing_attrs(self) -> dict[str, Any]:
        used = "+".join(sorted(self._inputs)) or "none"
        return {**self._quality.fields(), **self._timing.fields(), "client_input": used}
