"""Where a session's actions come from: one ``ActionSource`` protocol, a human and an agent controller.

The session asks its source to ``begin`` each episode (the human's start gate), for one ``Choice``
per step, and what to do when the episode ``finish``es (the human's summary: next, discard, quit);
it never knows whether a person at a window or a function chose. The human controller turns the
window's keys into actions through the keymap resolver and keeps the episode's input log and
quality fields; the agent controller calls the agent and, when it plays in a window, still honours
Esc and Backspace. An agent's own exceptions become ``AgentFailedError`` where the agent is loaded,
at the CLI edge (``recorder.cli``), so the session can seal the good steps and blame the agent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from gymrec.recorder.agents import Agent
from gymrec.recorder.choices import Choice, EndChoice, StepView
from gymrec.recorder.quality import QualityTracker
from gymrec.shared.spool.schema import EndReason

if TYPE_CHECKING:  # pygame is imported only when a window exists: headless agents never load it
    import numpy as np

    from gymrec.recorder.statusbar import HudState
    from gymrec.recorder.window import GameWindow, TickInput
    from gymrec.shared.keymaps.action_resolver import ActionResolver


REWIND_REFUSED = "rewind: press T to take control first"
NOTICE_NS = 2_000_000_000  # how long a notice stays on the status bar


class ActionSource(Protocol):
    """Something that chooses the actions of a session."""

    @property
    def collector(self) -> str:
        """Who chooses: ``human``, ``random`` or the agent's ``MODULE:CALLABLE``."""
        ...

    @property
    def keymap(self) -> dict[str, Any] | None:
        """The keymap stored with each episode (None when no person plays)."""
        ...

    def begin(self, view: StepView) -> bool:
        """Before the first step of an episode; False: the player quit instead of starting."""
        ...

    def branch(self, view: StepView) -> None:
        """The episode starting now is a branch, at ``view`` (its copied prefix already stepped)."""
        ...

    def act(self, obs: Any, view: StepView) -> Choice:
        """The action for ``obs`` (the native observation), or a stop."""
        ...

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        """The episode ended by itself on ``view`` (its final frame): keep it or not, and go on or not."""
        ...

    def sealing_attrs(self) -> dict[str, Any]:
        """Attributes to store with the episode when it is sealed (input log, quality fields)."""
        ...

    def rewind(self, frames: Iterator[tuple[int, np.ndarray]], view: StepView,
               view_at: Callable[[int], StepView]) -> int | None:
        """Show ``frames`` going back from ``view`` while the player rewinds; the step to resume from
        (``view.step``: no rewind), or None if the player quit."""
        ...

    def close(self) -> None:
        """Let go of the window, if there is one."""
        ...


def _stop_of(tick: TickInput) -> EndReason | None:
    if tick.quit:
        return EndReason.QUIT
    if tick.discard:
        return EndReason.DISCARDED
    return None


def _hud(view: StepView, recording: bool, actor: str = "", notice: str = "") -> HudState:
    from gymrec.recorder.statusbar import HudState

    return HudState(fps_target=view.fps_target, step=view.step, episode_return=view.episode_return,
                    episode=view.episode, recording=recording, env_id=view.env_id, actor=actor,
                    notice=notice)


class HumanController:
    """A person at the window: held keys and buttons, resolved by the keymap into the native action.

    ``step_mode``: the env advances only when the player presses or holds a game key or button
    (any unbound key steps with no action), for careful frame-by-frame demonstrations.
    """

    def __init__(self, window: GameWindow, resolver: ActionResolver, keymap: dict[str, Any] | None,
                 step_mode: bool = False) -> None:
        self.window = window
        self.resolver = resolver
        self._keymap = keymap
        self.step_mode = step_mode
        self._notice = ""
        self._quality = QualityTracker(fps=1.0)
        self._origin_ns = 0

    @property
    def collector(self) -> str:
        return "human"

    @property
    def keymap(self) -> dict[str, Any] | None:
        return self._keymap

    def close(self) -> None:
        self.window.close()

    def begin(self, view: StepView) -> bool:
        self._quality = QualityTracker(fps=view.fps_target)
        started = self.window.wait_for_start(view.frame, _hud(view, recording=False), self._notice)
        self._notice = ""
        self._origin_ns = time.monotonic_ns()
        return started

    def branch(self, view: StepView) -> None:
        # The branch's figures and input log are its own play: the copied prefix was played in the
        # parent, and counting it again inflated a branch's late frames past its length.
        self._quality = QualityTracker(fps=view.fps_target)
        self.window.input_log.clear()
        self._origin_ns = time.monotonic_ns()

    def _interrupt(self, tick: TickInput, view: StepView) -> Choice | None:
        """A stop (quit, discard, ...) or a rewind asked for on this tick, instead of an action."""
        stop = _stop_of(tick)
        if stop is not None:
            if stop == EndReason.DISCARDED:
                self._notice = f"episode {view.episode} discarded"
            return Choice(stop=stop, shown_ns=tick.shown_ns, decided_ns=time.monotonic_ns())
        if tick.rewind:
            return Choice(rewind=True, shown_ns=tick.shown_ns)
        return None

    def act(self, obs: Any, view: StepView) -> Choice:
        tick = self.window.next_tick(view.frame, _hud(view, recording=True), wait_for_input=self.step_mode)
        interrupt = self._interrupt(tick, view)
        if interrupt is not None:
            return interrupt
        self._quality.step(bool(tick.keys), tick.paused_for, tick.late_s)
        return Choice(self.resolver(tick.keys), shown_ns=tick.shown_ns, decided_ns=time.monotonic_ns())

    def rewind(self, frames: Iterator[tuple[int, np.ndarray]], view: StepView,
               view_at: Callable[[int], StepView]) -> int | None:
        return self.window.rewind_view(frames, view.step, view.frame,
                                       lambda step: _hud(view_at(step), recording=False))

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        minutes, seconds = divmod(view.step / view.fps_target, 60)
        summary = [f"episode {view.episode} over ({end})",
                   f"return {view.episode_return:g}    length {view.step} steps    time {int(minutes)}:{seconds:04.1f}"]
        choice = self.window.episode_over(view.frame, _hud(view, recording=False), summary)
        if choice.discard:
            self._notice = f"episode {view.episode} discarded"
        return choice

    def sealing_attrs(self) -> dict[str, Any]:
        log = self.window.input_log
        self._quality.presses = log.presses()
        return {**self._quality.fields(), "input_log": log.to_attrs(self._origin_ns)}


class TakeoverController(HumanController):
    """``--takeover``: the agent plays in the window; T hands control to the player and back.

    Every step records who chose it (``Choice.actor``), so HG-DAgger-style correction data (where
    the human intervened, and what they did) comes straight out of the episode.
    """

    def __init__(self, window: GameWindow, resolver: ActionResolver, keymap: dict[str, Any] | None,
                 agent: Agent, name: str) -> None:
        super().__init__(window, resolver, keymap)
        self.agent = agent
        self.name = name
        self.human_in_control = False
        self._refused_until_ns = 0  # the bar says why R did nothing until then

    @property
    def collector(self) -> str:
        return self.name

    def begin(self, view: StepView) -> bool:
        self.human_in_control = False  # every episode starts with the agent in control
        return super().begin(view)

    def act(self, obs: Any, view: StepView) -> Choice:
        actor = "human" if self.human_in_control else "agent"
        notice = REWIND_REFUSED if time.monotonic_ns() < self._refused_until_ns else ""
        tick = self.window.next_tick(view.frame, _hud(view, recording=True, actor=actor, notice=notice))
        interrupt = self._interrupt(tick, view)
        if interrupt is not None and not (interrupt.rewind and not self.human_in_control):
            return interrupt
        if tick.rewind:  # the agent's play is not the player's to rewind: say so, and play this step on
            self._refused_until_ns = time.monotonic_ns() + NOTICE_NS
        if tick.toggle:
            self.human_in_control = not self.human_in_control
            actor = "human" if self.human_in_control else "agent"
        self._quality.step(bool(tick.keys), tick.paused_for, tick.late_s)
        action = self.resolver(tick.keys) if self.human_in_control else self.agent(obs)
        return Choice(action, shown_ns=tick.shown_ns, decided_ns=time.monotonic_ns(), actor=actor)

    def sealing_attrs(self) -> dict[str, Any]:
        return {**super().sealing_attrs(), "takeover": True}


class AgentController:
    """A function from observation to action; with a window, shown at the console's pace."""

    keymap = None

    def __init__(self, agent: Agent, name: str, window: GameWindow | None = None) -> None:
        self.agent = agent
        self.name = name
        self.window = window

    @property
    def collector(self) -> str:
        return self.name

    def close(self) -> None:
        if self.window is not None:
            self.window.close()

    def begin(self, view: StepView) -> bool:
        return True  # an agent needs no start gate: nobody has to get ready

    def branch(self, view: StepView) -> None:
        return None  # an agent never rewinds, so it never branches

    def act(self, obs: Any, view: StepView) -> Choice:
        if self.window is None:
            # Headless: no frame is shown to anyone, so there is no timing to keep; zeros compress to
            # nothing, where clock readings cost ~5 B/frame of spool (P3).
            return Choice(self.agent(obs))
        tick = self.window.next_tick(view.frame, _hud(view, recording=True))
        stop = _stop_of(tick)
        if stop is not None:
            return Choice(stop=stop, shown_ns=tick.shown_ns, decided_ns=tick.shown_ns)
        return Choice(self.agent(obs), shown_ns=tick.shown_ns, decided_ns=time.monotonic_ns())

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        return EndChoice()

    def sealing_attrs(self) -> dict[str, Any]:
        return {}

    def rewind(self, frames: Iterator[tuple[int, np.ndarray]], view: StepView,
               view_at: Callable[[int], StepView]) -> int | None:
        return view.step  # an agent never asks to rewind
