"""stable-retro: its integrations name the games; the ROMs are the user's to import."""

from __future__ import annotations

import importlib
import re
from typing import Any

import gymnasium as gym

from gymrec.shared.envs.base import Backend
from gymrec.shared.errors import MissingRomError

RETRO_CONSOLES = (
    "Atari2600", "Nes", "Snes", "Genesis", "Sms", "GameGear", "GameBoy", "GbColor", "GbAdvance",
    "PCEngine", "Saturn", "32x", "N64", "SCD", "NintendoDs", "FBNeo",
)  # fmt: skip
_RETRO_ID = re.compile(r"^[A-Za-z0-9_]+-(" + "|".join(RETRO_CONSOLES) + r")(-v\d+)?$")


class RetroBackend(Backend):
    name = "retro"
    distribution = "stable-retro"

    def _retro(self) -> Any:
        return importlib.import_module("stable_retro")

    def ids(self) -> list[str]:
        retro = self._retro()
        return sorted(retro.data.list_games(retro.data.Integrations.ALL))

    def owns(self, env_id: str) -> bool:
        return bool(_RETRO_ID.match(env_id))

    def check_available(self, env_id: str) -> None:
        retro = self._retro()
        try:
            retro.data.get_romfile_path(env_id, retro.data.Integrations.ALL)
        except FileNotFoundError as e:
            raise MissingRomError(
                f"no ROM is installed for {env_id}",
                "import your ROM with: python -m stable_retro.import PATH_TO_ROM_DIR",
            ) from e

    def make_raw(self, env_id: str, kwargs: dict[str, Any]) -> gym.Env:
        return self._retro().make(env_id, render_mode="rgb_array", **kwargs)

    def action_meanings(self, env: gym.Env) -> tuple[str, ...] | None:
        # MultiBinary: element i is button i; stable-retro names unused slots None.
        return tuple(str(b) if b is not None else "" for b in env.unwrapped.buttons)  # type: ignore[attr-defined]

    def native_fps(self, env: gym.Env, spec_kwargs: dict[str, Any]) -> tuple[float, float]:
        return float(env.metadata.get("video.frames_per_second", 60.0)), 1.0
