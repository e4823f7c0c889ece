"""The raw input log: every key, button and axis event of an episode with a monotonic timestamp.

Actions fold every press between two steps into one; researchers modelling human reaction times
(Atari-HEAD measured 250-300 ms) need the presses themselves. Events are stamped with
``time.monotonic_ns()`` when gymrec takes them off SDL's queue, which it does every few
milliseconds while the game loop waits for the next tick (``FixedRateClock.idle``), so a stamp is at
most ~4 ms after the press, not a whole step. Kept columnar, relative to the episode's
``origin_ns`` (``to_attrs``); sealing stores the columns as the episode's ``input/`` arrays
(``shared.spool.zarr_layout.write_input_log``), ~176 kB an hour of play against ~970 kB as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pygame

KEY_DOWN, KEY_UP, BUTTON_DOWN, BUTTON_UP, AXIS = 0, 1, 2, 3, 4
KIND_NAMES = ("key_down", "key_up", "button_down", "button_up", "axis")


def _kind(event: pygame.event.Event) -> int | None:
    kind = event.type
    if kind == pygame.KEYDOWN:
        return KEY_DOWN
    if kind == pygame.KEYUP:
        return KEY_UP
    if kind == pygame.CONTROLLERBUTTONDOWN:
        return BUTTON_DOWN
    if kind == pygame.CONTROLLERBUTTONUP:
        return BUTTON_UP
    if kind == pygame.CONTROLLERAXISMOTION:
        return AXIS
    return None


@dataclass
class InputLog:
    """One episode's input events, columnar: ``t_ns[i]``, ``kind[i]``, ``code[i]``, ``value[i]``.

    ``code`` is the SDL keycode (``pygame.K_*``), game-controller button or axis; ``value`` is the
    axis position (-32768..32767) or, for keys and buttons, the controller's instance id (0 for keys).
    """

    t_ns: list[int] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    code: list[int] = field(default_factory=list)
    value: list[int] = field(default_factory=list)

    def add(self, t_ns: int, event: pygame.event.Event) -> None:
        kind = _kind(event)
        if kind is None:
            return
        if kind in (KEY_DOWN, KEY_UP):
            code, value = int(getattr(event, "key", 0)), 0
        elif kind == AXIS:
            code, value = int(getattr(event, "axis", 0)), int(getattr(event, "value", 0))
        else:
            code, value = int(getattr(event, "button", 0)), int(getattr(event, "instance_id", 0))
        self.t_ns.append(t_ns)
        self.kind.append(kind)
        self.code.append(code)
        self.value.append(value)

    def __len__(self) -> int:
        return len(self.t_ns)

    def presses(self) -> int:
        """Key and button presses (not releases, not stick motion)."""
        return sum(1 for kind in self.kind if kind in (KEY_DOWN, BUTTON_DOWN))

    def clear(self) -> None:
        for column in (self.t_ns, self.kind, self.code, self.value):
            column.clear()

    def to_attrs(self, origin_ns: int) -> dict[str, Any]:
        """JSON-able, times relative to ``origin_ns`` (the same clock as the per-step times)."""
        return {
            "origin_ns": origin_ns,
            "kinds": list(KIND_NAMES),
            "t_ns": [t - origin_ns for t in self.t_ns],
            "kind": list(self.kind),
            "code": list(self.code),
            "value": list(self.value),
        }
