"""Keymaps: which keyboard keys press which buttons, per backend, as TOML data.

``load_keymap`` reads and validates a keymap (the builtin one in ``shared/keymaps/`` or a user file
that replaces it); ``build_resolver`` binds it to one env and returns an ``ActionResolver`` that turns
the set of held pygame key names into a native action for ``env.action_space``.

Key syntax: a pygame key name (``pygame.key.name()``: "left", "space", "left shift", "a", "1"), or
"shift"/"ctrl"/"alt" for either side, optionally prefixed by modifiers ("alt+left"). While a chord
is down, bindings of the same key with fewer modifiers are shadowed, so "alt+left" strafes instead
of turning. A binding's value is a target or a list of alternatives (first one the env has wins).

This module is the public entry point; the parts live in ``shared.keymaps.bindings`` (data),
``shared.keymaps.keymap_parse`` (TOML validation), ``shared.keymaps.action_resolver`` (the resolver contract) and
``shared.keymaps.resolvers`` (one resolver per backend), so callers import from here and need not care.
"""

from __future__ import annotations

from gymrec.shared.keymaps.action_resolver import ActionResolver
from gymrec.shared.keymaps.bindings import (
    ATARI_ACTIONS,
    MODIFIERS,
    RESERVED_KEYS,
    Binding,
    Chord,
    Keymap,
    active_bindings,
)
from gymrec.shared.keymaps.keymap_parse import BUILTIN_FILES, load_keymap, parse_key
from gymrec.shared.keymaps.resolvers import build_resolver

__all__ = [
    "ATARI_ACTIONS",
    "BUILTIN_FILES",
    "MODIFIERS",
    "RESERVED_KEYS",
    "ActionResolver",
    "Binding",
    "Chord",
    "Keymap",
    "active_bindings",
    "build_resolver",
    "load_keymap",
    "parse_key",
]
