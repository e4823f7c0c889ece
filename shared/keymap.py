"""Keymaps: which keyboard keys press which buttons, per backend, as TOML data.

``load_keymap`` reads and validates a keymap (the builtin one in ``shared/keymaps/`` or a user file
that replaces it); ``build_resolver`` binds it to one env and returns an ``ActionResolver`` that turns
the set of held pygame key names into a native action for ``env.action_space``.

Key syntax: a pygame key name (``pygame.key.name()``: "left", "space", "left shift", "a", "1"), or
"shift"/"ctrl"/"alt" for either side, optionally prefixed by modifiers ("alt+left"). While a chord
is down, bindings of the same key with fewer modifiers are shadowed, so "alt+left" strafes instead
of turning. A binding's value is a target or a list of alternatives (first one the env has wins).
"""

from __future__ import annotations

import itertools
import math
import re
import tomllib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import gymnasium
import numpy as np
import pygame

from shared.errors import KeymapError

BUILTIN_FILES: Mapping[str, str] = MappingProxyType({"ale": "atari", "vizdoom": "vizdoom", "retro": "retro"})
MODIFIERS = frozenset({"shift", "ctrl", "alt"})
# gymrec's own controls; recorder.input treats them as commands, so no keymap may bind them.
RESERVED_KEYS: Mapping[str, str] = MappingProxyType(
    {"escape": "quit", "p": "pause", "backspace": "discard", "f1": "help"}
)
ATARI_ACTIONS = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
    "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
)  # fmt: skip

_CHORD = re.compile(r"^((?:(?:shift|ctrl|alt)\+)*)(.+)$")
_KEY_HINT = "use pygame key names like 'left', 'space', 'left shift', or 'alt+left'"


def _is_down(key: str, held: frozenset[str]) -> bool:
    if key in MODIFIERS:
        return f"left {key}" in held or f"right {key}" in held
    return key in held


@dataclass(frozen=True)
class Chord:
    """A key plus the modifiers that must be held with it."""

    key: str
    modifiers: frozenset[str] = frozenset()

    @property
    def text(self) -> str:
        return "+".join([*sorted(self.modifiers), self.key])

    def is_down(self, held: frozenset[str]) -> bool:
        return _is_down(self.key, held) and all(_is_down(m, held) for m in self.modifiers)


@dataclass(frozen=True)
class Binding:
    chord: Chord
    targets: tuple[str, ...]  # alternatives, best first


def active_bindings(bindings: Iterable[Binding], held: frozenset[str]) -> list[int]:
    """Indices of the bindings that act for ``held``, after chords shadow their plainer forms."""
    down = [(i, b.chord) for i, b in enumerate(bindings) if b.chord.is_down(held)]
    return [
        i
        for i, chord in down
        if not any(o.key == chord.key and o.modifiers > chord.modifiers for _, o in down)
    ]


@dataclass(frozen=True)
class Keymap:
    """A validated keymap. ``sections`` is "bindings" for ale/vizdoom and one per console for retro."""

    backend: str
    source: str
    sections: Mapping[str, tuple[Binding, ...]]
    deltas: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "source": self.source,
            "sections": {
                name: {b.chord.text: list(b.targets) for b in bindings}
                for name, bindings in self.sections.items()
            },
            "deltas": dict(self.deltas),
        }


def load_keymap(backend: str, path: Path | None = None) -> Keymap:
    """Read and validate the builtin keymap of ``backend``, or the user file ``path`` instead."""
    if backend not in BUILTIN_FILES:
        raise KeymapError(f"unknown keymap backend {backend!r}", "use one of: ale, vizdoom, retro")
    builtin = BUILTIN_FILES[backend]
    if path is None:
        source = f"builtin:{builtin}"
        text = resources.files("shared").joinpath("keymaps", f"{builtin}.toml").read_text(encoding="utf-8")
    else:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise KeymapError(
                f"keymap {source}: cannot read it: {reason}", "pass a readable UTF-8 TOML file"
            ) from e
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise KeymapError(
            f"keymap {source}: invalid TOML: {e}",
            f"fix the syntax; shared/keymaps/{builtin}.toml shows the format",
        ) from e
    if backend == "ale":
        return _parse_ale(data, source)
    if backend == "vizdoom":
        return _parse_vizdoom(data, source)
    return _parse_retro(data, source)


# --- parsing ----------------------------------------------------------------------------------


def parse_key(raw: object, section: str, source: str) -> Chord:
    """Validate a key (or chord) string and return it with pygame's canonical key name."""
    if not isinstance(raw, str) or not raw.strip():
        raise KeymapError(f"keymap {source}: empty key in [{section}]", _KEY_HINT)
    match = _CHORD.match(raw.strip().lower())
    assert match is not None  # the pattern accepts every non-empty string
    modifiers = frozenset(m for m in match.group(1).split("+") if m)
    key = match.group(2)
    if key not in MODIFIERS:
        try:
            with warnings.catch_warnings():
                # key_code works before pygame.init() but warns that it might not; it is correct.
                warnings.simplefilter("ignore")
                key = pygame.key.name(pygame.key.key_code(key))
        except ValueError:
            raise KeymapError(f"keymap {source}: unknown key {raw!r} in [{section}]", _KEY_HINT) from None
    if key in RESERVED_KEYS:
        raise KeymapError(
            f"keymap {source}: key {raw!r} in [{section}] is reserved for gymrec's {RESERVED_KEYS[key]} command",
            "bind another key; Esc, P, Backspace and F1 are gymrec's",
        )
    return Chord(key, modifiers)


def _table(data: Mapping[str, Any], name: str, source: str, required: bool = True) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise KeymapError(
            f"keymap {source}: no [{name}] table", f"add a [{name}] table mapping keys to buttons"
        )
    return value


def _only_tables(data: Mapping[str, Any], allowed: set[str], source: str) -> None:
    for name in data:
        if name not in allowed:
            raise KeymapError(
                f"keymap {source}: unknown table [{name}]",
                f"use only {', '.join(f'[{a}]' for a in sorted(allowed))}",
            )


def _bindings(
    table: Mapping[str, Any], section: str, source: str, check: Any, single: bool = False
) -> tuple[Binding, ...]:
    """Parse ``table``; ``check(target, key)`` validates one target and returns its normal form."""
    out: list[Binding] = []
    seen: dict[Chord, str] = {}
    for raw_key, value in table.items():
        chord = parse_key(raw_key, section, source)
        if chord in seen:
            raise KeymapError(
                f"keymap {source}: key {raw_key!r} in [{section}] is bound twice (also as {seen[chord]!r})",
                "keep one binding per key",
            )
        seen[chord] = raw_key
        values = [value] if isinstance(value, str) else value
        if (
            not isinstance(values, list)
            or not values
            or (single and len(values) > 1)
            or not all(isinstance(v, str) for v in values)
        ):
            want = "a name" if single else "a name or a list of names"
            raise KeymapError(
                f"keymap {source}: key {raw_key!r} in [{section}] must map to {want}", f"got {value!r}"
            )
        out.append(Binding(chord, tuple(check(v.strip(), raw_key) for v in values)))
    return tuple(out)


def _parse_ale(data: Mapping[str, Any], source: str) -> Keymap:
    _only_tables(data, {"bindings"}, source)

    def check(target: str, key: str) -> str:
        if target.upper() not in ATARI_ACTIONS:
            raise KeymapError(
                f"keymap {source}: unknown Atari action {target!r} for key {key!r} in [bindings]",
                f"use one of the 18 ALE action names: {' '.join(ATARI_ACTIONS)}",
            )
        return target.upper()

    bindings = _bindings(_table(data, "bindings", source), "bindings", source, check, single=True)
    return Keymap("ale", source, MappingProxyType({"bindings": bindings}))


def _parse_vizdoom(data: Mapping[str, Any], source: str) -> Keymap:
    import vizdoom  # late: only VizDoom keymaps need it

    _only_tables(data, {"bindings", "deltas"}, source)
    known = set(vizdoom.Button.__members__)
    hint = "use vizdoom.Button names like MOVE_FORWARD, ATTACK, TURN_LEFT_RIGHT_DELTA"

    def is_delta(name: str) -> bool:
        return bool(vizdoom.is_delta_button(vizdoom.Button.__members__[name]))

    deltas: dict[str, float] = {}
    for name, value in _table(data, "deltas", source, required=False).items():
        if name.upper() not in known or not is_delta(name.upper()):
            raise KeymapError(f"keymap {source}: {name!r} in [deltas] is not a delta button", hint)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise KeymapError(
                f"keymap {source}: magnitude of {name} in [deltas] must be a positive number",
                f"got {value!r}",
            )
        deltas[name.upper()] = float(value)

    def check(target: str, key: str) -> str:
        sign, name = (target[0], target[1:].strip().upper()) if target[:1] in "+-" else ("", target.upper())
        if name not in known:
            raise KeymapError(
                f"keymap {source}: unknown VizDoom button {target!r} for key {key!r} in [bindings]", hint
            )
        if is_delta(name) and not sign:
            raise KeymapError(
                f"keymap {source}: delta button {name} for key {key!r} needs a direction",
                f"write '+{name}' or '-{name}'",
            )
        if sign and not is_delta(name):
            raise KeymapError(
                f"keymap {source}: {target!r} for key {key!r}: only delta buttons take a sign",
                f"write '{name}'",
            )
        if sign and name not in deltas:
            raise KeymapError(
                f"keymap {source}: no magnitude for {name} (used by key {key!r})",
                f"add '{name} = 5.0' to [deltas]",
            )
        return sign + name

    bindings = _bindings(_table(data, "bindings", source), "bindings", source, check)
    return Keymap("vizdoom", source, MappingProxyType({"bindings": bindings}), MappingProxyType(deltas))


def _parse_retro(data: Mapping[str, Any], source: str) -> Keymap:
    import stable_retro  # late: only retro keymaps need it

    systems = {name.lower(): name for name in stable_retro.data.EMU_INFO}
    sections: dict[str, tuple[Binding, ...]] = {}
    for raw_console, table in data.items():
        console = systems.get(raw_console.lower())
        if console is None or not isinstance(table, dict):
            raise KeymapError(
                f"keymap {source}: unknown console table [{raw_console}]",
                f"use stable-retro system names: {', '.join(sorted(systems.values()))}",
            )
        if console in sections:
            raise KeymapError(
                f"keymap {source}: console [{raw_console}] appears twice", "keep one table per console"
            )
        buttons = [b for b in stable_retro.get_system_info(console)["buttons"] if b]

        def check(target: str, key: str, console: str = console, buttons: list[str] = buttons) -> str:
            if target.upper() not in buttons:
                raise KeymapError(
                    f"keymap {source}: unknown {console} button {target!r} for key {key!r} in [{console}]",
                    f"use one of: {' '.join(buttons)}",
                )
            return target.upper()

        sections[console] = _bindings(table, console, source, check)
    if not sections:
        raise KeymapError(
            f"keymap {source}: no console tables", "add e.g. a [Genesis] table mapping keys to buttons"
        )
    return Keymap("retro", source, MappingProxyType(sections))


# --- resolving --------------------------------------------------------------------------------

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


def _nearest(wanted: Sequence[Any], lookup: Any) -> Any:
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


def _cancel(pressed: set[Any], pairs: Iterable[tuple[Any, Any]]) -> None:
    for a, b in pairs:
        if a in pressed and b in pressed:
            pressed -= {a, b}


def _env_id(env: gymnasium.Env) -> str:
    spec = env.spec or env.unwrapped.spec
    return spec.id if spec is not None else type(env.unwrapped).__name__


class ActionResolver(ABC):
    """Maps the held pygame key names of one step to a native action of ``env.action_space``."""

    def __init__(self, keymap: Keymap, env: gymnasium.Env, bindings: Sequence[Binding]) -> None:
        self.keymap = keymap
        self.env_id = _env_id(env)
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
        lines = [f"{key}: {effect}" for key, effect in self._effects.items()]
        if self._missing:
            lines.append(f"not in this game: {', '.join(self._missing)}")
        return lines


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
            found = _nearest(wanted, lambda subset: index.get(_atari_name(subset)))
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
        _cancel(parts, _ATARI_OPPOSITES)
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
            hit = _nearest(wanted, lambda subset: self._combos.get(frozenset(subset)))
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
        _cancel(pressed, self._opposites)
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
    return re.sub(r"-v\d+$", "", _env_id(env)).rsplit("-", 1)[-1]


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
        _cancel(pressed, self._opposites)
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
