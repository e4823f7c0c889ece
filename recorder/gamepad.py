"""Game controllers through SDL's game controller API (pygame-ce ``pygame._sdl2.controller``).

SDL maps every known pad (Xbox, PlayStation, Switch, most USB pads) onto one layout, so a keymap
names buttons once: ``pad a``, ``pad b``, ``pad x``, ``pad y``, ``pad up``/``down``/``left``/``right``
(the d-pad), ``pad lb``/``pad rb`` (shoulders), ``pad start``, ``pad back`` (select), and the left
stick as ``pad stick up``/``down``/``left``/``right`` (``shared.keymaps.bindings.PAD_NAMES``). These names go through the same input model
and keymap resolver as keyboard keys, so keyboard and gamepad can be used together.

Pads are opened when the window opens and whenever SDL reports one plugged in (hot-plug); a pad
that is unplugged is closed and its held buttons are released by the input model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

import pygame
from pygame._sdl2 import controller

log = logging.getLogger(__name__)

BUTTON_NAMES: Mapping[int, str] = MappingProxyType({
    pygame.CONTROLLER_BUTTON_A: "pad a",
    pygame.CONTROLLER_BUTTON_B: "pad b",
    pygame.CONTROLLER_BUTTON_X: "pad x",
    pygame.CONTROLLER_BUTTON_Y: "pad y",
    pygame.CONTROLLER_BUTTON_DPAD_UP: "pad up",
    pygame.CONTROLLER_BUTTON_DPAD_DOWN: "pad down",
    pygame.CONTROLLER_BUTTON_DPAD_LEFT: "pad left",
    pygame.CONTROLLER_BUTTON_DPAD_RIGHT: "pad right",
    pygame.CONTROLLER_BUTTON_LEFTSHOULDER: "pad lb",
    pygame.CONTROLLER_BUTTON_RIGHTSHOULDER: "pad rb",
    pygame.CONTROLLER_BUTTON_START: "pad start",
    pygame.CONTROLLER_BUTTON_BACK: "pad back",
})
STICK_NAMES: Mapping[int, tuple[str, str]] = MappingProxyType({
    pygame.CONTROLLER_AXIS_LEFTX: ("pad stick left", "pad stick right"),
    pygame.CONTROLLER_AXIS_LEFTY: ("pad stick up", "pad stick down"),  # SDL's y axis points down
})
# Half of the axis range: SDL's recommended dead zone (8000 of 32767) still lets a worn stick drift.
STICK_THRESHOLD = 16000


def stick_names(axis: int, value: int) -> tuple[frozenset[str], frozenset[str]]:
    """(names now held, names now released) for a left-stick axis at ``value`` (-32768..32767)."""
    pair = STICK_NAMES.get(axis)
    if pair is None:
        return frozenset(), frozenset()
    low, high = pair
    if value <= -STICK_THRESHOLD:
        return frozenset({low}), frozenset({high})
    if value >= STICK_THRESHOLD:
        return frozenset({high}), frozenset({low})
    return frozenset(), frozenset(pair)


class Gamepads:
    """The connected game controllers, kept open so SDL sends their events."""

    def __init__(self) -> None:
        self._open: dict[int, controller.Controller] = {}  # instance id -> controller

    def open(self) -> None:
        controller.init()
        for index in range(controller.get_count()):
            self._add(index)

    def _add(self, index: int) -> None:
        if not controller.is_controller(index):
            return
        try:
            pad = controller.Controller(index)
        except pygame.error as e:  # unplugged between the event and now
            log.info("game controller %d could not be opened: %s", index, e)
            return
        instance = pad.as_joystick().get_instance_id()
        self._open[instance] = pad
        log.info("game controller connected: %s", pad.name)

    def handle(self, event: pygame.event.Event) -> None:
        """Hot-plug: open pads as they arrive, close them as they leave."""
        if event.type == pygame.CONTROLLERDEVICEADDED:
            self._add(int(event.device_index))
        elif event.type == pygame.CONTROLLERDEVICEREMOVED:
            pad = self._open.pop(int(event.instance_id), None)
            if pad is not None:
                log.info("game controller disconnected: %s", pad.name)
                pad.quit()

    @property
    def connected(self) -> int:
        return len(self._open)

    def close(self) -> None:
        for pad in self._open.values():
            pad.quit()
        self._open.clear()
        controller.quit()
