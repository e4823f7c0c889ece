"""Human play end to end, in process: real window (dummy video driver), real keymap, posted events.

The CLI refuses human play without a real display (tests/test_display.py), so these tests drive the
``Session`` and the ``HumanController`` directly. Events are scheduled by clock tick: the window waits
on its clock once per frame it shows (start gate, each step, each paused frame, the summary), as a
person sees them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pygame
import zarr

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import HumanController
from gymrec.recorder.session import Session
from gymrec.recorder.window import GameWindow
from gymrec.shared.envs.backends import make_env
from gymrec.shared.keymaps.keymap import build_resolver, load_keymap
from gymrec.shared.spool.episode import Episode

DOWN, UP = pygame.KEYDOWN, pygame.KEYUP
PAD_DOWN, PAD_UP, AXIS = pygame.CONTROLLERBUTTONDOWN, pygame.CONTROLLERBUTTONUP, pygame.CONTROLLERAXISMOTION
Script = dict[int, list[tuple[int, int]]]


class ScriptedClock(FixedRateClock):
    """A 1 kHz clock that posts the events scheduled for wait number N just before it."""

    def __init__(self, script: Script, late: float = 0.0) -> None:
        super().__init__(1000.0)
        self.script = script
        self.waits = 0
        self.late = late  # every tick says it was at least this late (quality fields' late frames)

    def wait(self, not_before: float | None = None) -> float:
        for kind, code in self.script.get(self.waits, []):
            if kind in (DOWN, UP):
                event = pygame.event.Event(kind, key=code, mod=0, unicode="", scancode=0)
            elif kind == AXIS:
                axis, value = divmod(code, 100_000)
                event = pygame.event.Event(kind, axis=axis, value=value - 50_000, instance_id=0)
            else:
                event = pygame.event.Event(kind, button=code, instance_id=0)
            pygame.event.post(event)
        self.waits += 1
        return max(super().wait(not_before), self.late)


def axis(which: int, value: int) -> int:
    return which * 100_000 + value + 50_000


def tap(key: int) -> list[tuple[int, int]]:
    return [(DOWN, key), (UP, key)]


def play(env_id: str, script: Script, spool: Path, seed: int = 4, env_kwargs: dict[str, Any] | None = None,
         late: float = 0.0, **config: Any) -> list[Episode]:
    made = make_env(env_id, env_kwargs or {})
    config = PlayConfig(env_id=env_id, spool=spool, seed=seed, fps=1000.0, player="tester", **config)
    keymap = load_keymap(made.backend)
    resolver = build_resolver(keymap, made.env)
    window = GameWindow(title="test", fps=1000.0, scale=1, help_lines=resolver.help_lines(),
                        clock=ScriptedClock(script, late))
    window.open((210, 160, 3))
    pygame.event.clear()  # the window-shown events SDL queues on open
    source = HumanController(window, resolver, {"source": keymap.source, "bindings": keymap.to_dict()},
                             step_mode=config.step_mode)
    try:
        result = Session(config, made, source).run()
    finally:
        source.close()
        made.env.close()
    return [Episode(p) for p in result.sealed]


def times(episode: Episode) -> tuple[np.ndarray, np.ndarray]:
    group = zarr.open_group(str(episode.path), mode="r")
    return np.asarray(group["shown_ns"][:]), np.asarray(group["decided_ns"][:])


BREAKOUT = ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_keys_become_actions_with_gate_latch_discard_help_and_quit(spool: Path) -> None:
    script: Script = {
        0: tap(pygame.K_n),  # the start gate: no step before this press
        1: tap(pygame.K_SPACE),  # tapped between steps: still FIRE once (latch)
        4: [(DOWN, pygame.K_RIGHT)],
        7: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_LEFT)],
        9: [(UP, pygame.K_LEFT), (DOWN, pygame.K_BACKSPACE)],  # discard and restart
        10: tap(pygame.K_n),  # the next episode's gate
        12: [(DOWN, pygame.K_F1)],  # help opens and pauses the game ...
        13: tap(pygame.K_SPACE),  # ... so this press never reaches it
        14: [(DOWN, pygame.K_F1)],  # ... and closes: the frame is back on screen for a whole period (wait 15)
        17: [(DOWN, pygame.K_ESCAPE)],  # stop and save
    }
    first, second = play("BreakoutNoFrameskip-v4", script, spool)
    assert [BREAKOUT[a] for a in first.actions()] == ["FIRE", "NOOP", "NOOP", "RIGHT", "RIGHT", "RIGHT", "LEFT", "LEFT"]
    assert first.end_reason == "discarded" and first.attrs.seed == 4
    assert second.end_reason == "quit" and second.actions() == [0, 0, 0] and second.attrs.seed != 4
    assert first.attrs.collector == "human" and first.attrs.player == "tester"
    assert first.attrs.keymap is not None and first.attrs.keymap["source"] == "builtin:atari"
    assert first.attrs.host is None  # the hostname is opt-in (--publish-host)

    # Quality fields: 6 of 8 steps had a key down; the help pause of the second episode is counted.
    assert first.attrs.active_fraction == 0.75 and first.attrs.longest_idle_s == 0.002
    # The help pause is two ticks of the 1 kHz test clock: under load both can come back at once (late),
    # and 0.3 ms rounds to 0.0 s; that nothing reached the game during it is the SPACE check above.
    assert first.attrs.paused_s == 0 and second.attrs.paused_s is not None and second.attrs.paused_s >= 0
    assert first.attrs.inputs_per_minute > 0 and first.attrs.late_frames >= 0

    # The input log has every press in order; the per-step times are monotonic.
    log = first.input_log()
    assert log is not None
    downs = [code for kind, code in zip(log["kind"], log["code"], strict=True) if log["kinds"][kind] == "key_down"]
    assert downs == [pygame.K_n, pygame.K_SPACE, pygame.K_RIGHT, pygame.K_LEFT, pygame.K_BACKSPACE]
    assert log["t_ns"] == sorted(log["t_ns"])
    shown, decided = times(first)
    assert len(shown) == first.length and (shown > 0).all() and (decided >= shown).all()
    assert (np.diff(shown) > 0).all() and (shown[1:] >= decided[:-1]).all()


def test_quitting_at_the_start_gate_records_no_step(spool: Path) -> None:
    # six frames at the gate, no key: the episode never began, so nothing is written (no empty episode)
    assert play("ALE/Pong-v5", {6: [(DOWN, pygame.K_ESCAPE)]}, spool) == []
    assert list(spool.iterdir()) == []


def test_the_summary_keeps_discards_or_quits(spool: Path) -> None:
    script: Script = {
        0: tap(pygame.K_n), 5: tap(pygame.K_n),  # episode 1: 3 steps (max_steps), next
        6: tap(pygame.K_n), 10: tap(pygame.K_BACKSPACE), 12: tap(pygame.K_n),  # episode 2: discarded on the summary
        13: tap(pygame.K_n), 18: tap(pygame.K_ESCAPE),  # episode 3: quit on the summary, kept
    }
    first, second, third = play("BreakoutNoFrameskip-v4", script, spool, max_steps=3)
    assert [e.length for e in (first, second, third)] == [3, 3, 3]
    assert first.end_reason == "truncated" and third.end_reason == "truncated"
    assert second.end_reason == "discarded" and second.attrs.discarded_after == "truncated"


def test_gamepad_and_keyboard_together(spool: Path) -> None:
    script: Script = {
        0: [(PAD_DOWN, pygame.CONTROLLER_BUTTON_START)],  # a button opens the gate too
        1: [(PAD_UP, pygame.CONTROLLER_BUTTON_START), (PAD_DOWN, pygame.CONTROLLER_BUTTON_A)],
        2: [(DOWN, pygame.K_RIGHT)],  # keyboard right + pad A
        3: [(PAD_UP, pygame.CONTROLLER_BUTTON_A), (UP, pygame.K_RIGHT),
            (AXIS, axis(pygame.CONTROLLER_AXIS_LEFTX, -30000))],  # the left stick
        4: [(AXIS, axis(pygame.CONTROLLER_AXIS_LEFTX, 0)), (PAD_DOWN, pygame.CONTROLLER_BUTTON_DPAD_UP)],
        5: [(DOWN, pygame.K_ESCAPE)],
    }
    (episode,) = play("ALE/Breakout-v5", script, spool, env_kwargs={"full_action_space": True})
    meanings = ["NOOP", "FIRE", "UP", "RIGHT", "LEFT", "DOWN", "UPRIGHT", "UPLEFT", "DOWNRIGHT", "DOWNLEFT", "UPFIRE",
                "RIGHTFIRE", "LEFTFIRE", "DOWNFIRE", "UPRIGHTFIRE", "UPLEFTFIRE", "DOWNRIGHTFIRE", "DOWNLEFTFIRE"]
    assert [meanings[a] for a in episode.actions()] == ["FIRE", "RIGHTFIRE", "LEFT", "UP"]
    log = episode.input_log()
    assert log is not None
    assert {log["kinds"][k] for k in log["kind"]} == {"button_down", "button_up", "key_down",
                                                                      "key_up", "axis"}


def test_step_mode_advances_only_when_the_player_acts(spool: Path) -> None:
    script: Script = {0: tap(pygame.K_n), 6: tap(pygame.K_RIGHT), 12: tap(pygame.K_n), 15: [(DOWN, pygame.K_ESCAPE)]}
    (episode,) = play("BreakoutNoFrameskip-v4", script, spool, step_mode=True)
    assert [BREAKOUT[a] for a in episode.actions()] == ["RIGHT", "NOOP"]  # an unbound key steps with no action
    shown, decided = times(episode)
    assert (decided > shown).all()  # each frame stayed up until the press


def test_takeover_hands_control_back_and_forth_and_records_who_chose(spool: Path) -> None:
    from gymrec.recorder.controllers import TakeoverController
    from gymrec.shared.spool.schema import ACTORS

    made = make_env("BreakoutNoFrameskip-v4", {})
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=spool, seed=4, fps=1000.0, player="tester",
                        agent="tests:always_fire", takeover=True)
    keymap = load_keymap(made.backend)
    resolver = build_resolver(keymap, made.env)
    script: Script = {
        0: tap(pygame.K_n),  # the gate; then the agent plays
        3: tap(pygame.K_t),  # T: the player takes control (no key held: NOOP)
        4: [(DOWN, pygame.K_RIGHT)],
        5: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_t), (UP, pygame.K_t)],  # and gives it back
        7: [(DOWN, pygame.K_ESCAPE)],
    }
    window = GameWindow(title="test", fps=1000.0, scale=1, help_lines=[], clock=ScriptedClock(script))
    window.open((210, 160, 3))
    pygame.event.clear()
    source = TakeoverController(window, resolver, {"source": keymap.source}, lambda _obs: 1, "tests:always_fire")
    try:
        (episode,) = [Episode(p) for p in Session(config, made, source).run().sealed]
    finally:
        source.close()
        made.env.close()
    assert [BREAKOUT[a] for a in episode.actions()] == ["FIRE", "FIRE", "NOOP", "RIGHT", "FIRE", "FIRE"]
    actors = zarr.open_group(str(episode.path), mode="r")["actor"][:]
    assert [ACTORS[a] for a in actors] == ["agent", "agent", "human", "human", "agent", "agent"]
    assert episode.attrs.takeover is True and episode.attrs.collector == "tests:always_fire"


def test_plain_human_play_records_every_step_as_human(spool: Path) -> None:
    (episode,) = play("BreakoutNoFrameskip-v4", {0: tap(pygame.K_n), 3: [(DOWN, pygame.K_ESCAPE)]}, spool)
    assert zarr.open_group(str(episode.path), mode="r")["actor"][:].tolist() == [0, 0]
