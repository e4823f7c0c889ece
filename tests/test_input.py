"""The pure input model: events in, held keys / latches / commands out. No window needed."""

from __future__ import annotations

import pygame
import pytest

from gymrec.recorder.input import (
    NO_COMMANDS,
    Commands,
    InputState,
    key_name,
    process_event,
    take_commands,
    take_step_keys,
)


def down(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=key)


def up(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYUP, key=key)


def feed(*events: pygame.event.Event, state: InputState | None = None) -> InputState:
    state = state or InputState()
    for event in events:
        state = process_event(state, event)
    return state


def test_key_names_are_pygame_names() -> None:
    assert key_name(down(pygame.K_LEFT)) == "left"
    assert key_name(down(pygame.K_LSHIFT)) == "left shift"
    assert key_name(down(pygame.K_SPACE)) == "space"
    assert key_name(pygame.event.Event(pygame.MOUSEMOTION)) == ""


def test_keydown_holds_and_latches_keyup_releases_only_held() -> None:
    state = feed(down(pygame.K_LEFT), down(pygame.K_SPACE))
    assert state.held == {"left", "space"}
    assert state.latched == {"left", "space"}
    state = feed(up(pygame.K_SPACE), state=state)
    assert state.held == {"left"}
    assert state.latched == {"left", "space"}


def test_latch_a_tap_between_steps_acts_on_the_next_step_once() -> None:
    state = feed(down(pygame.K_SPACE), up(pygame.K_SPACE))
    assert state.held == frozenset()
    keys, state = take_step_keys(state)
    assert keys == {"space"}
    keys, state = take_step_keys(state)
    assert keys == frozenset()


def test_held_key_acts_on_every_step_until_released() -> None:
    state = feed(down(pygame.K_UP))
    for _ in range(3):
        keys, state = take_step_keys(state)
        assert keys == {"up"}
    keys, state = take_step_keys(feed(up(pygame.K_UP), state=state))
    assert keys == frozenset()


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (pygame.K_ESCAPE, Commands(quit=True)),
        (pygame.K_p, Commands(pause=True)),
        (pygame.K_BACKSPACE, Commands(discard=True)),
        (pygame.K_F1, Commands(help=True)),
    ],
)
def test_control_keys_are_commands_not_game_keys(key: int, expected: Commands) -> None:
    state = feed(down(key), up(key))
    assert state.held == frozenset() and state.latched == frozenset()
    commands, state = take_commands(state)
    assert commands == expected
    assert take_commands(state)[0] == NO_COMMANDS


def test_toggles_cancel_but_discard_and_quit_stick() -> None:
    state = feed(down(pygame.K_p), down(pygame.K_p), down(pygame.K_F1))
    commands, _ = take_commands(state)
    assert commands == Commands(help=True)
    state = feed(down(pygame.K_BACKSPACE), down(pygame.K_BACKSPACE), down(pygame.K_ESCAPE))
    assert take_commands(state)[0] == Commands(quit=True, discard=True)


@pytest.mark.parametrize("kind", [pygame.QUIT, pygame.WINDOWCLOSE])
def test_window_close_quits(kind: int) -> None:
    assert take_commands(feed(pygame.event.Event(kind)))[0].quit


def test_focus_loss_clears_held_keys_but_keeps_latches() -> None:
    state = feed(down(pygame.K_RIGHT), down(pygame.K_LCTRL), pygame.event.Event(pygame.WINDOWFOCUSLOST))
    assert state.held == frozenset()
    keys, state = take_step_keys(state)
    assert keys == {"right", "left ctrl"}  # the presses still count once
    assert take_step_keys(state)[0] == frozenset()  # but nothing is stuck


def test_irrelevant_events_leave_the_state_untouched() -> None:
    state = feed(down(pygame.K_a))
    assert process_event(state, pygame.event.Event(pygame.MOUSEMOTION, pos=(1, 2))) is state
    assert process_event(state, up(pygame.K_b)) is state  # a release we never saw pressed
    assert process_event(state, pygame.event.Event(pygame.KEYDOWN)) is state  # no key at all


def test_state_is_immutable() -> None:
    state = InputState()
    process_event(state, down(pygame.K_LEFT))
    assert state == InputState()
    with pytest.raises(AttributeError):
        state.held = frozenset({"x"})  # type: ignore[misc]


# --- game controllers (SDL's game controller events, posted: no device needed) -----------------


def button(kind: int, which: int) -> pygame.event.Event:
    return pygame.event.Event(kind, button=which, instance_id=0)


def stick(axis: int, value: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.CONTROLLERAXISMOTION, axis=axis, value=value, instance_id=0)


def test_pad_buttons_are_held_and_latched_like_keys() -> None:
    state = feed(button(pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLER_BUTTON_A), down(pygame.K_RIGHT))
    assert state.held == {"pad a", "right"}  # keyboard and gamepad together
    state = feed(button(pygame.CONTROLLERBUTTONUP, pygame.CONTROLLER_BUTTON_A), state=state)
    keys, state = take_step_keys(state)
    assert keys == {"pad a", "right"} and state.held == {"right"}  # a tap between steps still acts once
    assert feed(button(pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLER_BUTTON_GUIDE)) == InputState()  # unbound


def test_left_stick_crosses_a_threshold_and_opposites_replace_each_other() -> None:
    from gymrec.recorder.gamepad import STICK_THRESHOLD

    state = feed(stick(pygame.CONTROLLER_AXIS_LEFTX, STICK_THRESHOLD - 1))
    assert state.held == frozenset()  # inside the dead zone
    state = feed(stick(pygame.CONTROLLER_AXIS_LEFTX, -32768), stick(pygame.CONTROLLER_AXIS_LEFTY, 32767), state=state)
    assert state.held == {"pad stick left", "pad stick down"}
    state = feed(stick(pygame.CONTROLLER_AXIS_LEFTX, 30000), state=state)
    assert state.held == {"pad stick right", "pad stick down"}
    state = feed(stick(pygame.CONTROLLER_AXIS_LEFTX, 0), stick(pygame.CONTROLLER_AXIS_RIGHTX, 30000), state=state)
    assert state.held == {"pad stick down"}  # centred; the right stick binds nothing


def test_unplugging_a_pad_releases_its_buttons_but_not_the_keyboard() -> None:
    state = feed(button(pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLER_BUTTON_DPAD_UP), down(pygame.K_SPACE))
    state = feed(pygame.event.Event(pygame.CONTROLLERDEVICEREMOVED, instance_id=0), state=state)
    assert state.held == {"space"}


def test_every_pad_name_is_one_the_keymaps_know() -> None:
    from gymrec.recorder.gamepad import BUTTON_NAMES, STICK_NAMES
    from gymrec.shared.keymaps.bindings import PAD_NAMES

    assert set(BUTTON_NAMES.values()) | {n for pair in STICK_NAMES.values() for n in pair} == PAD_NAMES
