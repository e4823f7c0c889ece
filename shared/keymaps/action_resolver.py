"""The ``ActionResolver`` contract shared by every backend, and the helpers the backends share.

A resolver is built once per env (``shared.keymaps.resolvers.build_resolver``) and then called every step
with the held pygame key names, so per-step work is kept to set operations and cached lookups.
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any

import gymnasium

from gymrec.shared.errors import KeymapError
from gymrec.shared.keymaps.bindings import Binding, Keymap


def nearest(wanted: Sequence[Any], lookup: Any) -> Any:
    """The first ``lookup(subset)`` that is not None, largest subsets first.

    Among subsets of one size, ``itertools.combinations`` order prefers keeping earlier elements of
    ``wanted``; that is the documented tie-break, so callers sort ``wanted`` by priority.
    """
    for size in range(len(wanted), -1, -1):
        for subset in itertools.combinations(wanted, size):
            found = lookup(subset)
            if found is not None:
                return found
    return None


def cancel_pairs(pressed: set[Any], pairs: Iterable[tuple[Any, Any]]) -> None:
    for a, b in pairs:
        if a in pressed and b in pressed:
            pressed -= {a, b}


def env_id_of(env: gymnasium.Env) -> str:
    spec = env.spec or env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


class ActionResolver(ABC):
    """Maps the held pygame key names of one step to a native action of ``env.action_space``."""

    def __init__(self, keymap: Keymap, env: gymnasium.Env, bindings: Sequence[Binding]) -> None:
        self.keymap = keymap
        self.env_id = env_id_of(env)
        self.space = env.action_space
        self._bindings = tuple(bindings)
        self._effects: dict[str, str] = {}  # chord -> what it does in this env
        self._missing: dict[str, str] = {}  # chord -> the targets this env lacks

    def _wrong_env(self, what: str) -> KeymapError:
        return KeymapError(
            f"keymap {self.keymap.source} is for {self.keymap.backend} envs but {self.env_id} {what}",
            "use the keymap of the env's own backend",
        )

    @abstractmethod
    def __call__(self, held: frozenset[str]) -> Any: ...

    @property
    def noop(self) -> Any:
        """The action with no key held."""
        return self(frozenset())

    def describe(self) -> dict[str, Any]:
        """JSON-able: what each key does in this env, and which bindings it lacks."""
        return {
            "backend": self.keymap.backend,
            "keymap": self.keymap.source,
            "env_id": self.env_id,
            "action_space": str(self.space),
            "keys": dict(self._effects),
            "unavailable": dict(self._missing),
        }

    def help_lines(self) -> list[str]:
        keys = {k: v for k, v in self._effects.items() if not k.startswith("pad ")}
        pad = {k.removeprefix("pad "): v for k, v in self._effects.items() if k.startswith("pad ")}
        lines = [f"{key}: {effect}" for key, effect in keys.items()]
        if pad:  # one line: a pad's dozen inputs would otherwise double the panel
            lines.append("gamepad: " + ", ".join(f"{k} {v}" for k, v in pad.items()))
        missing = [k for k in self._missing if not k.startswith("pad ")]
        if missing:
            lines.append(f"not in this game: {', '.join(missing)}")
        return lines
