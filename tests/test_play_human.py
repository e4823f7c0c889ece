"""Human play end to end: real window (dummy video driver), real keymap, posted pygame key events."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygame

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import HumanController
from gymrec.recorder.session import Session
from gymrec.recorder.window import GameWindow, HudState, TickInput
from gymrec.shared.backends import make_env
from gymrec.shared.episode import Episode
from gymrec.shared.keymap import build_resolver, load_keymap


class ScriptedWindow(GameWindow):
    """Posts the events scheduled for tick N just before the real window reads them."""

    def __init__(self, script: dict[int, list[tuple[int, int]]], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.script = script
        self.ticks = 0

    def next_tick(self, frame: np.ndarray, hud: HudState) -> TickInput:
        for kind, key in self.script.get(self.ticks, []):
            pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode="", scancode=0))
        self.ticks += 1
        return super().next_tick(frame, hud)


DOWN, UP = pygame.KEYDOWN, pygame.KEYUP


def play(env_id: str, script: dict[int, list[tuple[int, int]]], spool: Path, seed: int = 4) -> list[Episode]:
    made = make_env(env_id, {})
    config = PlayConfig(env_id=env_id, spool=spool, seed=seed, fps=1000.0, player="tester")
    keymap = load_keymap(made.backend)
    resolver = build_resolver(keymap, made.env)
    window = ScriptedWindow(script, title="test", fps=1000.0, scale=1, help_lines=resolver.help_lines())
    window.open((210, 160, 3))
    try:
        source = HumanController(window, resolver, {"source": keymap.source, "bindings": keymap.to_dict()})
        result = Session(config, made, source).run()
    finally:
        window.close()
        made.env.close()
    return [Episode(p) for p in result.sealed]


def test_keys_become_actions_with_latch_discard_and_quit(spool: Path) -> None:
    script = {
        0: [(DOWN, pygame.K_SPACE), (UP, pygame.K_SPACE)],  # tapped between steps: still FIRE once (latch)
        3: [(DOWN, pygame.K_RIGHT)],
        6: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_LEFT)],
        8: [(UP, pygame.K_LEFT), (DOWN, pygame.K_BACKSPACE)],  # discard and restart
        9: [(DOWN, pygame.K_F1)],  # the help overlay never reaches the game
        11: [(DOWN, pygame.K_ESCAPE)],  # stop and save
    }
    first, second = play("BreakoutNoFrameskip-v4", script, spool)
    meanings = ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert [meanings[a] for a in first.actions()] == ["FIRE", "NOOP", "NOOP", "RIGHT", "RIGHT", "RIGHT", "LEFT", "LEFT"]
    assert first.end_reason == "discarded" and first.attrs.seed == 4
    assert second.end_reason == "quit" and second.actions() == [0, 0] and second.attrs.seed != 4
    assert first.attrs.collector == "human" and first.attrs.player == "tester"
    assert first.attrs.keymap is not None and first.attrs.keymap["source"] == "builtin:atari"


def test_quitting_before_any_step_keeps_an_empty_discarded_episode(spool: Path) -> None:
    (only,) = play("ALE/Pong-v5", {0: [(DOWN, pygame.K_ESCAPE)]}, spool)
    assert only.length == 0 and only.end_reason == "discarded"
