"""The pure input model: pygame events in, held keys, step latches and pending commands out.

Like Gymnasium's ``utils/play.py`` ``process_event``, but immutable so it is testable without a
window. Game keys are pygame key names (``pygame.key.name``), the same strings keymaps use;
game controller buttons and the left stick are ``pad ...`` names (``recorder.gamepad``).

The latch: a key pressed and released between two steps would be invisible to a "keys held now"
model (a quick tap of FIRE at 15 steps/s is easily shorter than one step), so every KEYDOWN is also
latched until the next ``take_step_keys``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pygame

from gymrec.recorder.gamepad import BUTTON_NAMES, stick_names
from gymrec.shared.keymaps.bindings import PAD_NAMES
from gymrec.shared.keymaps.keymap import RESERVED_KEYS

_QUIT_EVENTS = frozenset({pygame.QUIT, pygame.WINDOWCLOSE})
_PAD_EVENTS = frozenset({pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLERBUTTONUP, pygame.CONTROLLERAXISMOTION,
                         pygame.CONTROLLERDEVICEREMOVED})


@dataclass(frozen=True)
class Commands:
    """gymrec's own controls, taken from an ``InputState`` by ``take_commands``."""

    quit: bool = False
    pause: bool = False  # toggle
    discard: bool = False
    help: bool = False  # toggle
    takeover: bool = False  # toggle: who is in control, the agent or the player (--takeover)
    rewind: bool = False  # R went down: rewind while it is held (``InputState.rewinding``)

    @property
    def any(self) -> bool:
        return self.quit or self.pause or self.discard or self.help or self.takeover or self.rewind


NO_COMMANDS = Commands()


@dataclass(frozen=True)
class InputState:
    """Keys held now, keys pressed since the last step, and commands not yet acted on.

    ``pause`` and ``help`` are pending toggles: two presses before anyone takes them cancel out.
    """

    held: frozenset[str] = frozenset()
    latched: frozenset[str] = frozenset()
    quit: bool = False
    pause: bool = False
    discard: bool = False
    help: bool = False
    takeover: bool = False
    rewind: bool = False
    rewinding: bool = False  # R is held


def key_name(event: pygame.event.Event) -> str:
    """The pygame key name of a KEYDOWN/KEYUP event ("" if it has none)."""
    key = getattr(event, "key", None)
    return pygame.key.name(key) if isinstance(key, int) else ""


def _command(state: InputState, command: str) -> InputState:
    if command == "quit":
        return dataclasses.replace(state, quit=True)
    if command == "pause":
        return dataclasses.replace(state, pause=not state.pause)
    if command == "discard":
        return dataclasses.replace(state, discard=True)
    if command == "rewind":
        return dataclasses.replace(state, rewind=True, rewinding=True)
    if command == "takeover":
        return dataclasses.replace(state, takeover=not state.takeover)
    return dataclasses.replace(state, help=not state.help)


def process_event(state: InputState, event: pygame.event.Event) -> InputState:
    """The state after ``event``; events that change nothing return ``state`` itself."""
    kind = event.type
    if kind in _QUIT_EVENTS:
        return dataclasses.replace(state, quit=True)
    if kind == pygame.WINDOWFOCUSLOST:
        # KEYUPs for keys released while another window has focus never arrive; forget them all
        # rather than run into a wall forever. Latches stay: those presses really happened.
        return dataclasses.replace(state, held=frozenset(), rewinding=False)
    if kind in _PAD_EVENTS:
        return _pad_event(state, event)
    if kind not in (pygame.KEYDOWN, pygame.KEYUP):
        return state
    name = key_name(event)
    if not name:
        return state
    command = RESERVED_KEYS.get(name)
    if command is not None:
        if kind == pygame.KEYDOWN:
            return _command(state, command)
        return dataclasses.replace(state, rewinding=False) if command == "rewind" and state.rewinding else state
    if kind == pygame.KEYDOWN:
        return dataclasses.replace(state, held=state.held | {name}, latched=state.latched | {name})
    if name not in state.held:
        return state
    return dataclasses.replace(state, held=state.held - {name})


def _press(state: InputState, names: frozenset[str]) -> InputState:
    new = names - state.held
    if not new:
        return state
    return dataclasses.replace(state, held=state.held | new, latched=state.latched | new)


def _release(state: InputState, names: frozenset[str]) -> InputState:
    if not names & state.held:
        return state
    return dataclasses.replace(state, held=state.held - names)


def _pad_event(state: InputState, event: pygame.event.Event) -> InputState:
    """Game controller buttons and the left stick, as ``pad ...`` names (see ``recorder.gamepad``)."""
    kind = event.type
    if kind == pygame.CONTROLLERDEVICEREMOVED:
        return _release(state, PAD_NAMES)  # its button-up events will never come
    if kind == pygame.CONTROLLERAXISMOTION:
        held, released = stick_names(int(getattr(event, "axis", -1)), int(getattr(event, "value", 0)))
        return _press(_release(state, released), held)
    name = BUTTON_NAMES.get(int(getattr(event, "button", -1)))
    if name is None:
        return state
    return _press(state, frozenset({name})) if kind == pygame.CONTROLLERBUTTONDOWN else _release(state, frozenset({name}))


def take_step_keys(state: InputState) -> tuple[frozenset[str], InputState]:
    """The keys acting on this step (held or latched) and the state with latches cleared."""
    keys = state.held | state.latched
    if not state.latched:
        return keys, state
    return keys, dataclasses.replace(state, latched=frozenset())


def take_commands(state: InputState) -> tuple[Commands, InputState]:
    """The pending commands and the state with them cleared."""
    commands = Commands(quit=state.quit, pause=state.pause, discard=state.discard, help=state.help,
                        takeover=state.takeover, rewind=state.rewind)
    if not commands.any:
        return NO_COMMANDS, state
    return commands, dataclasses.replace(state, quit=False, pause=False, discard=False, help=False, takeover=False,
                                         rewind=False)
