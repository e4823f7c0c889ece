"""Where a session's actions come from: one ``ActionSource`` protocol, a human and an agent controller.

The session asks its source for one ``Choice`` per step and never knows whether a person at a window
or a function chose it. The human controller turns the window's keys into actions through the keymap
resolver; the agent controller calls the agent and, when it plays in a window, still honours Esc and
Backspace. An agent's own exceptions are translated into ``AgentFailedError`` where the agent is
loaded, at the CLI edge (``recorder.cli``), so the session can seal the good steps and blame the agent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from gymrec.recorder.agents import Agent
from gymrec.shared.schema import EndReason

if TYPE_CHECKING:  # pygame is imported only when a window exists: headless agents never load it
    import numpy as np

    from gymrec.recorder.window import GameWindow, TickInput
    from gymrec.shared.action_resolver import ActionResolver


@dataclass(frozen=True)
class StepView:
    """What a source may show about the step it is asked to act on."""

    frame: np.ndarray  # the picture a person sees (the observation's image leaf)
    step: int
    episode_return: float
    episode: int  # 1-based, counting kept episodes
    env_id: str
    fps_target: float


@dataclass(frozen=True)
class Choice:
    """One step's answer: an action to take, or an end to the episode instead of a step."""

    action: Any = None
    stop: EndReason | None = None  # QUIT or DISCARDED: no action is taken
    shown_ns: int = 0  # time.monotonic_ns() when the frame was on screen (0: no window)
    decided_ns: int = 0  # time.monotonic_ns() when the action was sampled


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

    def act(self, obs: Any, view: StepView) -> Choice:
        """The action for ``obs`` (the native observation), or a stop."""
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


def _hud(view: StepView, recording: bool) -> Any:
    from gymrec.recorder.window import HudState

    return HudState(fps_target=view.fps_target, step=view.step, episode_return=view.episode_return,
                    episode=view.episode, recording=recording, env_id=view.env_id)


class HumanController:
    """A person at the window: held keys, resolved by the keymap into the env's native action."""

    collector = "human"

    def __init__(self, window: GameWindow, resolver: ActionResolver, keymap: dict[str, Any] | None) -> None:
        self.window = window
        self.resolver = resolver
        self._keymap = keymap

    @property
    def keymap(self) -> dict[str, Any] | None:
        return self._keymap

    def close(self) -> None:
        self.window.close()

    def act(self, obs: Any, view: StepView) -> Choice:
        tick = self.window.next_tick(view.frame, _hud(view, recording=True))
        shown = time.monotonic_ns()
        stop = _stop_of(tick)
        if stop is not None:
            return Choice(stop=stop, shown_ns=shown, decided_ns=shown)
        return Choice(self.resolver(tick.keys), shown_ns=shown, decided_ns=time.monotonic_ns())


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

    def act(self, obs: Any, view: StepView) -> Choice:
        shown = 0
        if self.window is not None:
            stop = _stop_of(self.window.next_tick(view.frame, _hud(view, recording=True)))
            shown = time.monotonic_ns()
            if stop is not None:
                return Choice(stop=stop, shown_ns=shown, decided_ns=shown)
        return Choice(self.agent(obs), shown_ns=shown, decided_ns=time.monotonic_ns())
