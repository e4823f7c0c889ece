"""What a source of actions and the window exchange: a step to act on, and the answers to it.

Its own module so that ``controllers`` (who plays) and ``window`` (the screen) both import it and
neither imports the other at run time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gymrec.shared.spool.schema import EndReason

if TYPE_CHECKING:
    import numpy as np


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
    actor: str = ""  # who chose it (schema.ACTORS); "" is the session's own collector
    rewind: bool = False  # instead of an action: the player wants to rewind (hold R)


@dataclass(frozen=True)
class EndChoice:
    """What to do with an episode that ended by itself (terminated or truncated)."""

    discard: bool = False
    quit: bool = False
