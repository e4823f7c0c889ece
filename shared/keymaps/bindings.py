"""Keymap data: chords, bindings and the validated ``Keymap``, plus which bindings act for held keys.

Everything here is backend-neutral and needs no emulator; ``shared.keymaps.keymap_parse`` builds these from
TOML and ``shared.keymaps.resolvers`` turns them into native actions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MODIFIERS = frozenset({"shift", "ctrl", "alt"})
# Game controller inputs in SDL's standard layout (recorder.gamepad maps SDL's buttons to these).
PAD_NAMES = frozenset({
    "pad a", "pad b", "pad x", "pad y", "pad up", "pad down", "pad left", "pad right", "pad lb", "pad rb",
    "pad start", "pad back", "pad stick up", "pad stick down", "pad stick left", "pad stick right",
})
# gymrec's own controls; recorder.input treats them as commands, so no keymap may bind them.
RESERVED_KEYS: Mapping[str, str] = MappingProxyType(
    {"escape": "quit", "p": "pause", "backspace": "discard", "f1": "help", "t": "takeover", "r": "rewind"}
)
ATARI_ACTIONS = (
    "NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT",
    "UPFIRE", "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
)  # fmt: skip

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
