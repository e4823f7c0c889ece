"""How an env begins an episode: the first observation, and the attributes that let it begin again.

Its own module so that the backends and the ALE starter (``shared.envs.ale_start``) both import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import gymnasium as gym


@dataclass(frozen=True)
class Started:
    """An episode's first observation and info; ``attrs`` go into the episode, ``note`` to the user."""

    obs: Any
    info: dict[str, Any]
    attrs: dict[str, Any] = field(default_factory=dict)
    note: str | None = None


class EpisodeStarter(Protocol):
    """How one env begins an episode when recording, and begins a recorded one again.

    ``restart`` makes a recorded episode start exactly as it did (from its recorded seed and
    ``start_state`` attribute), whatever the env ran before: replay and recovery reuse one env, and
    every episode still replays alone.
    """

    def start(self, seed: int) -> Started: ...

    def restart(self, seed: int, start_state: Mapping[str, Any] | None) -> Started: ...


class SeededStarter:
    """``reset(seed=...)`` every episode: VizDoom (2 ms) and stable-retro (0.8 ms) reseed cheaply;
    ALE with sticky actions (v5) pays its ROM reload (~100 ms) to keep every seed exact."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env

    def start(self, seed: int) -> Started:
        obs, info = self.env.reset(seed=seed)
        return Started(obs, info)

    def restart(self, seed: int, start_state: Mapping[str, Any] | None) -> Started:
        obs, info = self.env.reset(seed=seed)
        return Started(obs, info)
