"""Reading and validating keymap TOML: the builtin files in ``shared/keymaps/`` or a user's file.

Every mistake becomes a ``KeymapError`` naming the file, the table and the key, so a player can fix
their file from the one-line message. Backend names (VizDoom buttons, retro consoles) are checked
against the installed emulator, imported late so that a keymap of one backend needs only that one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import tomllib
import warnings
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pygame

from gymrec.shared.errors import KeymapError
from gymrec.shared.keymaps.bindings import (
    ATARI_ACTIONS,
    MODIFIERS,
    PAD_NAMES,
    RESERVED_KEYS,
    Binding,
    Chord,
    Keymap,
)

BUILTIN_FILES: Mapping[str, str] = MappingProxyType({"ale": "atari", "vizdoom": "vizdoom", "retro": "retro"})

_CHORD = re.compile(r"^((?:(?:shift|ctrl|alt)\+)*)(.+)$")
_KEY_HINT = "use pygame key names like 'left', 'space', 'left shift', or 'alt+left'"
_PAD_HINT = f"use one of: {', '.join(repr(n) for n in sorted(PAD_NAMES))} (no modifiers)"


def load_keymap(backend: str, path: Path | None = None) -> Keymap:
    """Read and validate the builtin keymap of ``backend``, or the user file ``path`` instead."""
    if backend not in BUILTIN_FILES:
        raise KeymapError(f"unknown keymap backend {backend!r}", "use one of: ale, vizdoom, retro")
    builtin = BUILTIN_FILES[backend]
    if path is None:
        source = f"builtin:{builtin}"
        text = resources.files("gymrec.shared").joinpath("keymaps", f"{builtin}.toml").read_text(encoding="utf-8")
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
    parse = {"ale": _parse_ale, "vizdoom": _parse_vizdoom}.get(backend, _parse_retro)
    keymap = parse(data, source)
    if not any(keymap.sections.values()):  # a window nobody can play would record an idle game as human play
        where = "[bindings]" if backend != "retro" else "a console table such as [Genesis]"
        raise KeymapError(f"keymap {source} binds no keys", f"add bindings under {where}; shared/keymaps/{builtin}.toml shows the format")
    # Stored with every episode and published: the file's name and content hash, never its path (a
    # home directory names the player); an error above still names the whole path, locally.
    return keymap if path is None else dataclasses.replace(keymap, source=published_source(Path(path), text))


def published_source(path: Path, text: str) -> str:
    """How a user keymap file is named in published data: ``name.toml sha256:<first 16 hex digits>``."""
    return f"{path.name} sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def parse_key(raw: object, section: str, source: str) -> Chord:
    """Validate a key (or chord) string and return it with pygame's canonical key name."""
    if not isinstance(raw, str) or not raw.strip():
        raise KeymapError(f"keymap {source}: empty key in [{section}]", _KEY_HINT)
    match = _CHORD.match(raw.strip().lower())
    assert match is not None  # the pattern accepts every non-empty string
    modifiers = frozenset(m for m in match.group(1).split("+") if m)
    key = " ".join(match.group(2).split())
    if key.startswith("pad "):
        if key not in PAD_NAMES or modifiers:
            raise KeymapError(f"keymap {source}: unknown gamepad input {raw!r} in [{section}]", _PAD_HINT)
        return Chord(key, modifiers)
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
            "bind another key; Esc, P, Backspace, F1, T and R are gymrec's",
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
