"""What every env backend answers (which ids it owns, whether they can run, how to make one), and
what a made env records.

The backends themselves are one module each (``shared.envs.ale``, ``shared.envs.vizdoom``,
``shared.envs.retro``); ``shared.envs.backends`` is their registry and the one ``make_env``.
"""

from __future__ import annotations

import importlib.metadata
import platform
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from gymrec.shared.envs.starters import EpisodeStarter, SeededStarter
from gymrec.shared.errors import MissingRomError


@dataclass(frozen=True)
class EnvEntry:
    env_id: str
    backend: str
    available: bool
    note: str = ""


@dataclass(frozen=True)
class MadeEnv:
    """What was made, as recorded in every episode: enough to make the same env again."""

    env: gym.Env
    env_id: str
    backend: str
    kwargs: dict[str, Any]
    spec_kwargs: dict[str, Any]
    versions: dict[str, str]
    native_fps: float
    starter: EpisodeStarter
    frameskip: float = field(default=1.0)
    history_info: tuple[str, ...] = ()


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return repr(value)


class Backend:
    name = ""
    distribution = ""
    # Info values that depend on the process's history, not on the episode: not recorded.
    history_info: tuple[str, ...] = ()

    def owns(self, env_id: str) -> bool:
        raise NotImplementedError

    def ids(self) -> list[str]:
        raise NotImplementedError

    def check_available(self, env_id: str) -> None:
        """Raise MissingRomError when the ROM/WAD is absent."""

    def prepare(self) -> None:
        """Import the package so that its env ids are registered with gymnasium."""

    def make_raw(self, env_id: str, kwargs: dict[str, Any]) -> gym.Env:
        return gym.make(env_id, render_mode="rgb_array", **kwargs)

    def starter(self, env: gym.Env) -> EpisodeStarter:
        return SeededStarter(env)

    def native_fps(self, env: gym.Env, spec_kwargs: dict[str, Any]) -> tuple[float, float]:
        """(true-speed steps per second, frames advanced per step)."""
        raise NotImplementedError

    def action_meanings(self, env: gym.Env) -> tuple[str, ...] | None:
        """What each action value (Discrete) or element (buttons) means, in the env's own words; None if unknown."""
        return None

    def versions(self) -> dict[str, str]:
        return {
            "python": platform.python_version(),
            "gymnasium": _version("gymnasium"),
            "numpy": _version("numpy"),
            self.distribution: _version(self.distribution),
            "gymrec": _version("gymrec"),
        }

    def entry(self, env_id: str) -> EnvEntry:
        try:
            self.check_available(env_id)
        except MissingRomError as e:
            return EnvEntry(env_id, self.name, False, e.hint or "")
        return EnvEntry(env_id, self.name, True)
