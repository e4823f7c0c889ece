"""VizDoom: its gymnasium wrapper registers the ids; some scenarios need a WAD it cannot ship."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import gymnasium as gym

from gymrec.shared.envs.base import Backend
from gymrec.shared.errors import MissingRomError

DOOM_TICS_PER_SECOND = 35.0


class VizdoomBackend(Backend):
    name = "vizdoom"
    distribution = "vizdoom"

    def _register(self) -> Path:
        importlib.import_module("vizdoom.gymnasium_wrapper")
        return Path(importlib.import_module("vizdoom").__file__ or "").parent

    def ids(self) -> list[str]:
        self._register()
        return sorted(k for k in gym.registry if k.startswith("Vizdoom"))

    def prepare(self) -> None:
        self._register()

    def owns(self, env_id: str) -> bool:
        return env_id.startswith("Vizdoom")

    def check_available(self, env_id: str) -> None:
        root = self._register()
        spec = gym.spec(env_id)
        cfg = root / "scenarios" / str((spec.kwargs or {}).get("scenario_config_file", ""))
        if not cfg.is_file():
            return
        for line in cfg.read_text(errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() in ("doom_game_path", "doom_scenario_path") and value.strip():
                wad = value.strip()
                if not ((root / "scenarios" / wad).exists() or (root / wad).exists()):
                    raise MissingRomError(
                        f"{env_id} needs {wad}, which is not installed",
                        f"copy your own {wad} into {root} (VizDoom cannot ship it)",
                    )

    def action_meanings(self, env: gym.Env) -> tuple[str, ...] | None:
        """Discrete: each value's button combination ("MOVE_LEFT+ATTACK", "NOOP"); otherwise the buttons
        in the order the action lists them (the wrapper puts delta buttons before binary ones)."""
        raw = env.unwrapped
        names = [b.name for b in raw.game.get_available_buttons()]  # type: ignore[attr-defined]
        combos = getattr(raw, "button_map", None)
        if isinstance(env.action_space, gym.spaces.Discrete) and combos is not None:
            binary = names[len(names) - len(combos[0]):] if len(combos) else []
            return tuple("+".join(n for n, on in zip(binary, combo, strict=True) if on) or "NOOP" for combo in combos)
        return tuple(names)

    def native_fps(self, env: gym.Env, spec_kwargs: dict[str, Any]) -> tuple[float, float]:
        skip = float(getattr(env.unwrapped, "frame_skip", 1) or 1)
        return DOOM_TICS_PER_SECOND / skip, skip
