"""Atari through ale-py: the ROMs ship in its wheel; the console runs at 60 Hz."""

from __future__ import annotations

import importlib
from typing import Any

import gymnasium as gym

from gymrec.shared.envs.base import Backend
from gymrec.shared.envs.starters import EpisodeStarter, SeededStarter

ATARI_HZ = 60.0


class AleBackend(Backend):
    name = "ale"
    distribution = "ale-py"
    history_info = ("frame_number",)  # frames since the emulator was made, across earlier episodes

    def _register(self) -> None:
        ale_py = importlib.import_module("ale_py")
        # ALE's banner goes to stderr on every env; keep stderr for gymrec's one-line messages.
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        gym.register_envs(ale_py)

    def prepare(self) -> None:
        self._register()

    def ids(self) -> list[str]:
        self._register()
        return sorted(k for k, s in gym.registry.items() if str(s.entry_point).startswith("ale_py"))

    def owns(self, env_id: str) -> bool:
        return env_id.startswith("ALE/") or env_id in self.ids()

    def starter(self, env: gym.Env) -> EpisodeStarter:
        from gymrec.shared.envs.ale_start import AleStarter, is_sticky  # imports numcodecs: only for ALE envs

        # Sticky actions make the start depend on ALE's RNG, which only reset(seed)'s ROM reload seeds.
        return SeededStarter(env) if is_sticky(env) else AleStarter(env)

    def action_meanings(self, env: gym.Env) -> tuple[str, ...] | None:
        return tuple(str(m) for m in env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]

    def native_fps(self, env: gym.Env, spec_kwargs: dict[str, Any]) -> tuple[float, float]:
        skip = spec_kwargs.get("frameskip", 1)
        frames = sum(skip) / 2 if isinstance(skip, tuple | list) else float(skip)
        return ATARI_HZ / frames, frames
