"""Env backends: which package owns an id, whether its ROM or WAD is there, and how to make it.

Each backend imports its package only when asked, so ``gymrec-play ALE/Pong-v5`` never loads VizDoom.
Envs are always made with ``render_mode="rgb_array"``: gymrec draws the observation itself, which
works windowed and headless alike (stable-retro's default "human" mode crashes without a display).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import platform
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym

from gymrec.shared.errors import EnvCreationError, MissingRomError, UnknownEnvError
from gymrec.shared.starters import EpisodeStarter, SeededStarter

ATARI_HZ = 60.0
DOOM_TICS_PER_SECOND = 35.0
RETRO_CONSOLES = (
    "Atari2600", "Nes", "Snes", "Genesis", "Sms", "GameGear", "GameBoy", "GbColor", "GbAdvance",
    "PCEngine", "Saturn", "32x", "N64", "SCD", "NintendoDs", "FBNeo",
)  # fmt: skip
_RETRO_ID = re.compile(r"^[A-Za-z0-9_]+-(" + "|".join(RETRO_CONSOLES) + r")(-v\d+)?$")


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
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
        from gymrec.shared.ale_start import AleStarter, is_sticky  # imports numcodecs: only for ALE envs

        # Sticky actions make the start depend on ALE's RNG, which only reset(seed)'s ROM reload seeds.
        return SeededStarter(env) if is_sticky(env) else AleStarter(env)

    def action_meanings(self, env: gym.Env) -> tuple[str, ...] | None:
        return tuple(str(m) for m in env.unwrapped.get_action_meanings())  # type: ignore[attr-defined]

    def native_fps(self, env: gym.Env, spec_kwargs: dict[str, Any]) -> tuple[float, float]:
        skip = spec_kwargs.get("frameskip", 1)
        frames = sum(skip) / 2 if isinstance(skip, tuple | list) else float(skip)
        return ATARI_HZ / frames, frames


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


BACKENDS: tuple[type[Backend], ...] = (VizdoomBackend, RetroBackend, AleBackend)


def backend_named(name: str) -> Backend:
    for cls in BACKENDS:
        if cls.name == name:
            return cls()
    raise UnknownEnvError(f"unknown backend {name!r}", "expected one of: ale, vizdoom, retro")


def all_ids() -> dict[str, Backend]:
    out: dict[str, Backend] = {}
    for cls in BACKENDS:
        backend = cls()
        for env_id in backend.ids():
            out.setdefault(env_id, backend)
    return out


def resolve(env_id: str) -> Backend:
    """The backend that owns ``env_id``, or UnknownEnvError with the closest known ids."""
    for cls in BACKENDS:
        backend = cls()
        if backend.owns(env_id) and env_id in backend.ids():
            return backend
    close = suggestions(env_id, list(all_ids()))
    hint = f"did you mean {', '.join(close)}?" if close else "run 'gymrec-play --list' to see every id"
    raise UnknownEnvError(f"unknown env id {env_id!r}", hint)


_VERSION = re.compile(r"-v(\d+)$")


def _family(env_id: str) -> tuple[str, int]:
    """(the game's name without namespace or version, lowercased; the version): ALE/Breakout-v5 -> (breakout, 5)."""
    name = env_id.rsplit("/", 1)[-1]
    match = _VERSION.search(name)
    version = int(match.group(1)) if match else -1
    return (name[: match.start()] if match else name).lower(), version


def suggestions(query: str, known: list[str], n: int = 3) -> list[str]:
    """The ids closest to ``query``, newest version first: "breakout" suggests ALE/Breakout-v5 before
    Breakout-v4 and Breakout-v0, which ale-py keeps only to reproduce old results."""
    families: dict[str, list[tuple[int, str]]] = {}
    for env_id in known:
        family, version = _family(env_id)
        families.setdefault(family, []).append((version, env_id))
    close = difflib.get_close_matches(_family(query)[0], list(families), n=n, cutoff=0.6)
    found = [env_id for family in close for _, env_id in sorted(families[family], key=lambda v: (-v[0], v[1]))]
    return (found or difflib.get_close_matches(query, known, n=n, cutoff=0.6))[:n]


def list_envs(filter_text: str = "") -> list[EnvEntry]:
    needle = filter_text.lower()
    return [backend.entry(env_id) for env_id, backend in sorted(all_ids().items()) if needle in env_id.lower()]


def action_meanings(made: MadeEnv) -> tuple[str, ...] | None:
    """The made env's action meanings (ALE ``get_action_meanings()``, VizDoom buttons, retro buttons).

    A backend version without the call gives None: the episode then records none, as before.
    """
    try:
        return backend_named(made.backend).action_meanings(made.env)
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def make_env(env_id: str, kwargs: dict[str, Any], backend_name: str | None = None) -> MadeEnv:
    """Make ``env_id`` with ``kwargs``; translate every backend failure into one typed error."""
    backend = backend_named(backend_name) if backend_name else resolve(env_id)
    backend.prepare()
    backend.check_available(env_id)
    try:
        env = backend.make_raw(env_id, dict(kwargs))
    except (TypeError, ValueError, gym.error.Error) as e:
        # gymnasium appends "was raised from the environment creator for ID with kwargs (every kwarg)":
        # the line already names the env and the user's kwargs, so only the cause is kept.
        cause = str(e).split(" was raised from the environment creator")[0]
        raise EnvCreationError(
            f"cannot make {env_id} with {kwargs or 'no kwargs'}: {cause}", "check the --env-kwarg names and values"
        ) from e
    except RuntimeError as e:
        hint = "only one stable-retro emulator can run per process" if "emulator" in str(e) else "see GYMREC_DEBUG=1"
        raise EnvCreationError(f"cannot make {env_id}: {e}", hint) from e
    spec_kwargs = dict(env.spec.kwargs) if env.spec is not None else dict(kwargs)
    fps, frameskip = backend.native_fps(env, spec_kwargs)
    return MadeEnv(
        env=env,
        env_id=env_id,
        backend=backend.name,
        kwargs=_jsonable(dict(kwargs)),
        spec_kwargs=_jsonable(spec_kwargs),
        versions=backend.versions(),
        native_fps=fps,
        starter=backend.starter(env),
        frameskip=frameskip,
        history_info=backend.history_info,
    )


class RecordedEnv(Protocol):
    """What an episode records about its env (``shared.attrs.EpisodeAttrs`` has these fields)."""

    @property
    def env_id(self) -> str: ...
    @property
    def env_kwargs(self) -> Mapping[str, Any]: ...
    @property
    def backend(self) -> str: ...


def make_env_for(recorded: RecordedEnv) -> MadeEnv:
    """The env an episode was recorded in, built from its attributes (recovery and replay both use this)."""
    return make_env(recorded.env_id, dict(recorded.env_kwargs), recorded.backend)
