"""The pairing contract, in process: action t is what the player did while observation t was on screen.

A player made of pixels: its clock, each time the window waits out a frame period, reads the game
area the window is showing *at that moment* (the dummy video driver keeps the real surface), picks a
key as a fixed function of those pixels, and presses it. Replay cannot see a pairing error (a
recording shifted by one step is still a consistent recording); this can: the recorded action t must
be the response to the recorded observation t, on every step. With the pre-0.2 order (wait, then
draw, then return the keys gathered during the previous frame) it was the response to observation
t-1 on every step where the response changed. The real-window version (Xvfb, a bot reading the X
server's pixels) is tests/test_pairing_bot.py.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pygame
import pytest
import zarr

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import HumanController, TakeoverController
from gymrec.recorder.session import Session
from gymrec.recorder.window import GameWindow
from gymrec.shared.envs.backends import make_env
from gymrec.shared.keymaps.keymap import build_resolver, load_keymap
from gymrec.shared.spool.episode import Episode

# Breakout's minimal action set: NOOP, FIRE, RIGHT, LEFT. FIRE launches the ball, so the picture keeps
# changing even where the paddle is stuck at a wall (a still frame would fix the response for good).
RESPONSES: tuple[int | None, ...] = (None, pygame.K_SPACE, pygame.K_LEFT, pygame.K_RIGHT)
ACTION_OF = {None: 0, pygame.K_SPACE: 1, pygame.K_LEFT: 3, pygame.K_RIGHT: 2}


def response(frame: np.ndarray) -> int | None:
    """The bot's key for a frame: a fixed function of its pixels that changes often as the paddle moves."""
    return RESPONSES[zlib.crc32(np.ascontiguousarray(frame).tobytes()) % len(RESPONSES)]


class PixelBot(FixedRateClock):
    """A 1 kHz clock that, before each wait, looks at the screen and answers it like a player would.

    ``tap``: press and release within the frame (the latch must still act on this step);
    otherwise hold the key until the response changes. ``start``: keys for the first waits (the start
    gate, T to take control). ``unbound``: in step mode a frame waits for a press, so "no key" is a
    tap of a key the keymap does not bind (it steps with NOOP).
    """

    def __init__(self, window: GameWindow, start: list[int], tap: bool = False, unbound: int | None = None,
                 done_after: int = 10_000) -> None:
        super().__init__(1000.0)
        self.done_after = done_after  # then Esc: the episode's summary screen waits for a key
        self.window = window
        self.start = list(start)
        self.tap = tap
        self.unbound = unbound
        self.held: int | None = None
        self.seen = 0

    def _post(self, kind: int, key: int) -> None:
        pygame.event.post(pygame.event.Event(kind, key=key, mod=0, unicode="", scancode=0))

    def wait(self, not_before: float | None = None) -> float:
        if self.start:
            key = self.start.pop(0)
            self._post(pygame.KEYDOWN, key)
            self._post(pygame.KEYUP, key)
            return super().wait(not_before)
        if self.seen >= self.done_after:
            self._post(pygame.KEYDOWN, pygame.K_ESCAPE)
            return super().wait(not_before)
        screen = pygame.display.get_surface()
        area = self.window.game_area
        shown = pygame.surfarray.array3d(screen.subsurface(area)).swapaxes(0, 1)[:: self.window.scale, :: self.window.scale]
        key = response(shown)
        self.seen += 1
        if self.tap:
            pressed = key if key is not None else self.unbound
            if pressed is not None:
                self._post(pygame.KEYDOWN, pressed)
                self._post(pygame.KEYUP, pressed)
        elif key != self.held:
            if self.held is not None:
                self._post(pygame.KEYUP, self.held)
            if key is not None:
                self._post(pygame.KEYDOWN, key)
            self.held = key
        return super().wait(not_before)


def _play(spool: Path, env_id: str, *, tap: bool = False, step_mode: bool = False, takeover: bool = False,
          max_steps: int = 120, scale: int = 2) -> Episode:
    made = make_env(env_id, {})
    agent = "tests:always_fire" if takeover else "human"
    config = PlayConfig(env_id=env_id, spool=spool, seed=3, fps=1000.0, player="bot", episodes=1,
                        max_steps=max_steps, step_mode=step_mode, agent=agent, takeover=takeover)
    keymap = load_keymap(made.backend)
    resolver = build_resolver(keymap, made.env)
    window = GameWindow(title="pairing", fps=1000.0, scale=scale, help_lines=[])
    start = [pygame.K_n] + ([pygame.K_t] if takeover else [])
    window.clock = PixelBot(window, start, tap=tap, unbound=pygame.K_n if step_mode else None,
                            done_after=max_steps + 5)
    window.clock.idle = window._pump
    shape = made.env.observation_space.shape
    window.open(shape)
    pygame.event.clear()
    stored = {"source": keymap.source}
    source: HumanController = (TakeoverController(window, resolver, stored, lambda _obs: 1, agent) if takeover
                               else HumanController(window, resolver, stored, step_mode=step_mode))
    try:
        result = Session(config, made, source).run()
    finally:
        source.close()
        made.env.close()
    (path,) = result.sealed
    return Episode(path)


def _pairing(episode: Episode, skip: int = 0) -> tuple[int, int, int]:
    """(steps checked, responses that changed, steps whose action is the response to their own frame)."""
    frames = episode.obs(episode.attrs.image_key, 0, episode.length)
    actions = episode.actions()
    expected = [ACTION_OF[response(frame)] for frame in frames]
    steps = range(skip, episode.length)
    changed = sum(1 for t in steps if t > 0 and expected[t] != expected[t - 1])
    matched = sum(1 for t in steps if actions[t] == expected[t])
    return len(steps), changed, matched


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "ALE/Breakout-v5"])
def test_held_keys_answer_the_frame_on_screen(spool: Path, env_id: str) -> None:
    episode = _play(spool, env_id)
    steps, changed, matched = _pairing(episode)
    assert episode.length == 120 and changed >= 30  # the response changes often: nothing vacuous
    assert matched == steps, f"{steps - matched} of {steps} actions answer another frame than their own"
    assert episode.attrs.pairing == "on_screen"


def test_a_tap_within_a_frame_acts_on_that_frame(spool: Path) -> None:
    episode = _play(spool, "BreakoutNoFrameskip-v4", tap=True)
    steps, changed, matched = _pairing(episode)
    assert changed >= 30 and matched == steps


def test_step_mode_pairs_the_press_with_the_frame_it_answered(spool: Path) -> None:
    episode = _play(spool, "BreakoutNoFrameskip-v4", tap=True, step_mode=True, max_steps=60)
    steps, changed, matched = _pairing(episode)
    assert episode.length == 60 and changed >= 15 and matched == steps


def test_takeover_human_steps_answer_their_own_frame(spool: Path) -> None:
    episode = _play(spool, "BreakoutNoFrameskip-v4", takeover=True)
    steps, changed, matched = _pairing(episode, skip=1)  # step 0's frame got T (take control), not an answer
    assert changed >= 30 and matched == steps
    actors = zarr.open_group(str(episode.path), mode="r")["actor"][:]
    assert actors.tolist() == [0] * episode.length  # all the bot's (schema.ACTORS: human)


def test_timing_says_each_frame_stayed_up_its_period(spool: Path) -> None:
    """``decided_ns - shown_ns`` is the frame period the input was gathered over (1 ms here), never ~0."""
    episode = _play(spool, "BreakoutNoFrameskip-v4", max_steps=60)
    group = zarr.open_group(str(episode.path), mode="r")
    shown, decided = np.asarray(group["shown_ns"][:]), np.asarray(group["decided_ns"][:])
    held = (decided - shown) / 1e6
    assert np.median(held) >= 0.5  # most of the 1 kHz period (the step and the draw take the rest); was ~0.05 ms
