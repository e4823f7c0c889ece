"""The backend resolvers (Atari, VizDoom, stable-retro) and ``build_resolver``, which picks one.

Each binds a ``Keymap`` to one env: it maps the keymap's targets onto what that env actually offers
(falling back to the nearest available action), records which bindings the env lacks for the help
screen, and then resolves held keys to a native action valid in ``env.action_space``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

import gymnasium
import numpy as np

from gymrec.shared.errors import KeymapError
from gymrec.shared.keymaps.action_resolver import ActionResolver, cancel_pairs, env_id_of, nearest
from gymrec.shared.keymaps.bindings import ATARI_ACTIONS, Keymap, active_bindings

_ATARI_PRIORITY = ("UP", "DOWN", "RIGHT", "LEFT", "FIRE")  # canonical name order, also the tie-break
_ATARI_OPPOSITES = (("UP", "DOWN"), ("RIGHT", "LEFT"))
_DOOM_OPPOSITES = (
    ("MOVE_FORWARD", "MOVE_BACKWARD"),
    ("MOVE_LEFT", "MOVE_RIGHT"),
    ("TURN_LEFT", "TURN_RIGHT"),
    ("LOOK_UP", "LOOK_DOWN"),
    ("MOVE_UP", "MOVE_DOWN"),
)
_PAD_OPPOSITES = (("UP", "DOWN"), ("LEFT", "RIGHT"))
_CACHE_LIMIT = 4096


def _atari_parts(name: str) -> frozenset[str]:
    parts: set[str] = set()
    for group in (("UP", "DOWN"), ("RIGHT", "LEFT"), ("FIRE",)):
        for part in group:
            if name.startswith(part):
                parts.add(part)
                name = name[len(part) :]
                break
    return frozenset(parts)


def _atari_name(parts: Iterable[str]) -> str:
    return "".join(p for p in _ATARI_PRIORITY if p in parts) or "NOOP"


class _AtariResolver(ActionResolver):
    def __init__(self, keymap: Keymap, env: gymnasium.Env) -> None:
        super().__init__(keymap, env, keymap.sections["bindings"])
        meanings_fn = getattr(env.unwrapped, "get_action_meanings", None)
        if meanings_fn is None or not isinstance(self.space, gymnasium.spaces.Discrete):
            raise self._wrong_env("is not an ALE env")
        start = int(self.space.start)
        meanings = [str(m) for m in meanings_fn()]
        index: dict[str, int] = {}
        for i, meaning in enumerate(meanings):
            index.setdefault(meaning, start + i)
        # Only 18 part sets exist after cancelling opposites, so resolve every one of them now.
        self._table: dict[frozenset[str], int] = {}
        for name in ATARI_ACTIONS:
            parts = _atari_parts(name)
            wanted = [p for p in _ATARI_PRIORITY if p in parts]
            found = nearest(wanted, lambda subset: index.get(_atari_name(subset)))
            self._table[parts] = start if found is None else found
        self._parts = [_atari_parts(b.targets[0]) for b in self._bindings]
        for binding, parts in zip(self._bindings, self._parts, strict=True):
            got = meanings[self._table[parts] - start]
            if got == "NOOP" and binding.targets[0] != "NOOP":
                self._missing[binding.chord.text] = binding.targets[0]
            else:
                self._effects[binding.chord.text] = got

    def __call__(self, held: frozenset[str]) -> int:
        parts: set[str] = set()
        for i in active_bindings(self._bindings, held):
            parts |= self._parts[i]
        cancel_pairs(parts, _ATARI_OPPOSITES)
        return self._table[frozenset(parts)]


class _VizdoomResolver(ActionResolver):
    def __init__(self, keymap: Keymap, env: gymnasium.Env) -> None:
        super().__init__(keymap, env, keymap.sections["bindings"])
        unwrapped = env.unwrapped
        game = getattr(unwrapped, "game", None)
        if game is None or not hasattr(unwrapped, "num_delta_buttons"):
            raise self._wrong_env("is not a VizDoom env")
        names = [b.name for b in game.get_available_buttons()]
        # The wrapper reorders buttons so that delta buttons come first (they form "continuous").
        n_delta = int(unwrapped.num_delta_buttons)
        deltas, binaries = names[:n_delta], names[n_delta:]
        space = self.space
        self._bin_space: gymnasium.Space[Any] | None = space
        self._cont_space: gymnasium.spaces.Box | None = None
        if isinstance(space, gymnasium.spaces.Dict):
            self._bin_space = space["binary"]
            self._cont_space = space["continuous"]  # type: ignore[assignment]
        elif isinstance(space, gymnasium.spaces.Box):
            self._bin_space, self._cont_space = None, space
        # Per binding: (is_delta, index, value); the first alternative the scenario has wins.
        self._actions: list[tuple[bool, int, float] | None] = []
        self._priority: dict[int, int] = {}
        for pos, binding in enumerate(self._bindings):
            chosen: tuple[bool, int, float] | None = None
            for target in binding.targets:
                name = target.lstrip("+-")
                if target[0] in "+-" and name in deltas and self._cont_space is not None:
                    value = keymap.deltas[name] * (1.0 if target[0] == "+" else -1.0)
                    chosen = (True, deltas.index(name), value)
                    self._effects[binding.chord.text] = f"{name} {value:+g}"
                    break
                if target[0] not in "+-" and name in binaries and self._bin_space is not None:
                    chosen = (False, binaries.index(name), 1.0)
                    self._priority.setdefault(chosen[1], pos)
                    self._effects[binding.chord.text] = name
                    break
            if chosen is None:
                self._missing[binding.chord.text] = " | ".join(binding.targets)
            self._actions.append(chosen)
        self._opposites = [
            (binaries.index(a), binaries.index(b))
            for a, b in _DOOM_OPPOSITES
            if a in binaries and b in binaries
        ]
        self._combos: dict[frozenset[int], int] = {}
        self._cache: dict[frozenset[int], int] = {}
        self._start = 0
        if isinstance(self._bin_space, gymnasium.spaces.Discrete):
            self._start = int(self._bin_space.start)
            for i, combo in enumerate(getattr(unwrapped, "button_map", ())):
                self._combos.setdefault(
                    frozenset(np.flatnonzero(np.asarray(combo)).tolist()), self._start + i
                )

    def _discrete(self, pressed: frozenset[int]) -> int:
        hit = self._cache.get(pressed)
        if hit is None:
            wanted = sorted(pressed, key=self._priority.__getitem__)
            hit = nearest(wanted, lambda subset: self._combos.get(frozenset(subset)))
            if hit is None:  # button_map always holds the all-zero combo, so only a broken env lands here
                hit = self._start
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[pressed] = hit
        return hit

    def __call__(self, held: frozenset[str]) -> Any:
        pressed: set[int] = set()
        box = self._cont_space
        cont = None if box is None else np.zeros(box.shape, box.dtype)
        for i in active_bindings(self._bindings, held):
            action = self._actions[i]
            if action is None:
                continue
            is_delta, index, value = action
            if not is_delta:
                pressed.add(index)
            elif cont is not None:  # always true: deltas are only chosen when the space has them
                cont[index] += value
        cancel_pairs(pressed, self._opposites)
        if cont is not None and box is not None:
            np.clip(cont, box.low, box.high, out=cont)
        binary: Any = None
        if isinstance(self._bin_space, gymnasium.spaces.Discrete):
            binary = self._discrete(frozenset(pressed))
        elif self._bin_space is not None:  # MultiBinary or MultiDiscrete: a 0/1 vector
            binary = np.zeros(self._bin_space.shape or (), self._bin_space.dtype)
            binary[list(pressed)] = 1
        if cont is None:
            return binary
        if binary is None:
            return cont
        return {"binary": binary, "continuous": cont}


def _console(env: gymnasium.Env) -> str:
    system = getattr(env.unwrapped, "system", None)
    if system:
        return str(system)
    # "Airstriker-Genesis-v0" -> "Genesis"
    return re.sub(r"-v\d+$", "", env_id_of(env)).rsplit("-", 1)[-1]


class _RetroResolver(ActionResolver):
    def __init__(self, keymap: Keymap, env: gymnasium.Env) -> None:
        buttons = getattr(env.unwrapped, "buttons", None)
        console = _console(env)
        section = {name.lower(): name for name in keymap.sections}.get(console.lower())
        super().__init__(keymap, env, keymap.sections[section] if section else ())
        if buttons is None:
            raise self._wrong_env("is not a stable-retro env")
        if section is None:
            raise KeymapError(
                f"keymap {keymap.source} has no [{console}] table for {self.env_id}",
                f"add a [{console}] table to a keymap file and pass it with --keymap",
            )
        if not isinstance(self.space, gymnasium.spaces.MultiBinary):
            raise KeymapError(
                f"keymap {keymap.source}: {self.env_id} has a {self.space} action space, gymrec needs MultiBinary",
                "make the env with the default use_restricted_actions (FILTERED)",
            )
        self._index: list[int | None] = []
        for binding in self._bindings:
            index = next((buttons.index(t) for t in binding.targets if t in buttons), None)
            self._index.append(index)
            if index is None:
                self._missing[binding.chord.text] = " | ".join(binding.targets)
            else:
                self._effects[binding.chord.text] = str(buttons[index])
        self._opposites = [
            (buttons.index(a), buttons.index(b)) for a, b in _PAD_OPPOSITES if a in buttons and b in buttons
        ]

    def __call__(self, held: frozenset[str]) -> np.ndarray:
        pressed = {
            i for i in (self._index[b] for b in active_bindings(self._bindings, held)) if i is not None
        }
        cancel_pairs(pressed, self._opposites)
        action: np.ndarray = np.zeros(
            self.space.shape or (), self.space.dtype
        )  # player 1's buttons come first
        action[list(pressed)] = 1
        return action


_RESOLVERS: Mapping[str, type[ActionResolver]] = MappingProxyType(
    {"ale": _AtariResolver, "vizdoom": _VizdoomResolver, "retro": _RetroResolver}
)


def build_resolver(keymap: Keymap, env: gymnasium.Env) -> ActionResolver:
    """Bind ``keymap`` to ``env``; the resolver's actions are valid in ``env.action_space``."""
    return _RESOLVERS[keymap.backend](keymap, env)  # type: ignore[call-arg]
