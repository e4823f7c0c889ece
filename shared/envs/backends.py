"""Env backends: which package owns an id, whether its ROM or WAD is there, and how to make it.

The registry of the backends (one module each, over ``shared.envs.base``) and the one ``make_env``.
Each backend imports its package only when asked, so ``gymrec-play ALE/Pong-v5`` never loads VizDoom.
Envs are always made with ``render_mode="rgb_array"``: gymrec draws the observation itself, which
works windowed and headless alike (stable-retro's default "human" mode crashes without a display).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Protocol

import gymnasium as gym

from gymrec.shared.envs.ale import AleBackend
from gymrec.shared.envs.base import Backend, EnvEntry, MadeEnv, jsonable
from gymrec.shared.envs.retro import RetroBackend
from gymrec.shared.envs.starters import EpisodeStarter
from gymrec.shared.envs.vizdoom import VizdoomBackend
from gymrec.shared.errors import EnvCreationError, UnknownEnvError

# The backends' own modules are imported through here: this is the module callers know.
__all__ = ["BACKENDS", "AleBackend", "Backend", "EnvEntry", "EpisodeStarter", "MadeEnv", "RecordedEnv", "RetroBackend",
           "VizdoomBackend", "action_meanings", "all_ids", "backend_named", "list_envs", "make_env", "make_env_for",
           "resolve", "suggestions"]


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
        kwargs=jsonable(dict(kwargs)),
        spec_kwargs=jsonable(spec_kwargs),
        versions=backend.versions(),
        native_fps=fps,
        starter=backend.starter(env),
        frameskip=frameskip,
        history_info=backend.history_info,
    )


class RecordedEnv(Protocol):
    """What an episode records about its env (``shared.spool.attrs.EpisodeAttrs`` has these fields)."""

    @property
    def env_id(self) -> str: ...
    @property
    def env_kwargs(self) -> Mapping[str, Any]: ...
    @property
    def backend(self) -> str: ...


def make_env_for(recorded: RecordedEnv) -> MadeEnv:
    """The env an episode was recorded in, built from its attributes (recovery and replay both use this)."""
    return make_env(recorded.env_id, dict(recorded.env_kwargs), recorded.backend)
