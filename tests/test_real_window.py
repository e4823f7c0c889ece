"""A real X window: gymrec-play under Xvfb, driven by real key presses from xdotool (helpers: tests.xwindow)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import zarr
from PIL import Image

from gymrec.recorder.statusbar import BAR_HEIGHT
from gymrec.shared.spool.episode import Episode
from tests.conftest import BIN
from tests.xwindow import find_window, geometry, input_events, needs, play_env, xvfb
from tests.xwindow import x as _x

pytestmark = needs("Xvfb", "xdotool", "import")

BREAKOUT_ACTIONS = {"NOOP": 0, "FIRE": 1, "RIGHT": 2, "LEFT": 3}  # ALE/Breakout-v5's minimal action set
SCALE = 3  # gymrec-play's default --scale


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb() as number:
        yield number


def test_real_key_presses_are_recorded(display: str, tmp_path: Path) -> None:
    import pygame

    spool, shot = tmp_path / "spool", tmp_path / "shot.png"
    env = play_env(display)
    play = subprocess.Popen([str(BIN / "gymrec-play"), "ALE/Breakout-v5", "--spool", str(spool), "--seed", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = find_window(display, play, 160 * SCALE)
        _x(display, "xdotool", "windowfocus", "--sync", window)
        time.sleep(0.7)  # ten ticks at 15 steps/s: without the start gate these would be recorded
        _x(display, "xdotool", "key", "n")  # starts the episode; n is bound to nothing
        time.sleep(0.3)
        _x(display, "xdotool", "key", "space")
        # A tick is 67 ms at 15 steps/s: keys of one tick combine (LEFT+FIRE is LEFT in Breakout).
        time.sleep(0.3)
        for key in ("Left", "Right"):
            _x(display, "xdotool", "keydown", key)
            time.sleep(0.5)
            _x(display, "xdotool", "keyup", key)
            time.sleep(0.2)
        _x(display, "import", "-window", "root", str(shot))
        where = geometry(display, window)
        _x(display, "xdotool", "key", "F1")  # help: a modal that pauses the game
        time.sleep(0.6)
        _x(display, "xdotool", "key", "F1")
        time.sleep(0.3)
        _x(display, "xdotool", "key", "Escape")
        out, err = play.communicate(timeout=20)
    finally:
        if play.poll() is None:
            play.kill()
            play.wait()
    assert play.returncode == 0, err

    (path,) = [Path(line) for line in out.splitlines() if line.endswith(".zarr")]
    episode = Episode(path)
    actions = episode.actions()
    for name in ("FIRE", "LEFT", "RIGHT"):
        assert BREAKOUT_ACTIONS[name] in actions, f"{name} missing from {actions}"
    assert episode.end_reason == "quit" and episode.attrs.collector == "human"

    # The input log: monotonic, with every key that was sent, in order.
    events = input_events(episode)
    assert [t for t, _, _ in events] == sorted(t for t, _, _ in events)
    downs = [code for _, kind, code in events if kind == "key_down"]
    assert downs == [pygame.K_n, pygame.K_SPACE, pygame.K_LEFT, pygame.K_RIGHT, pygame.K_F1, pygame.K_F1,
                     pygame.K_ESCAPE], downs
    group = zarr.open_group(str(path), mode="r")
    shown = np.asarray(group["shown_ns"][:])

    # The start gate: no step was shown before the first key press.
    first_press = next(t for t, kind, _ in events if kind == "key_down")
    assert (shown > first_press).all()

    # The help modal paused the game: no step's frame was first shown while it was up.
    f1_open, f1_close = [t for t, kind, code in events if kind == "key_down" and code == pygame.K_F1]
    assert not ((shown > f1_open) & (shown < f1_close)).any()
    assert episode.attrs.paused_s is not None and episode.attrs.paused_s > 0.4

    # The status bar is outside the game: the window is the frame scaled by 3, plus the bar below,
    # and the screenshot of the game area is a recorded frame, pixel for pixel.
    x, y, w, h = where["X"], where["Y"], where["WIDTH"], where["HEIGHT"]
    assert (w, h) == (160 * SCALE, 210 * SCALE + BAR_HEIGHT)
    game = np.asarray(Image.open(shot).convert("RGB"))[y : y + 210 * SCALE, x : x + w]
    assert len(np.unique(game.reshape(-1, 3), axis=0)) >= 6
    frames = episode.obs(episode.attrs.image_key, 0, episode.length + 1)
    exact = [i for i, frame in enumerate(frames)
             if np.array_equal(np.repeat(np.repeat(frame, SCALE, axis=0), SCALE, axis=1), game)]
    print(f"\nreal window: {episode.length} steps, screenshot = recorded frame {exact} exactly")
    assert exact, "the screenshot of the game area is not a recorded frame, pixel for pixel"


def test_rewind_and_play_on_makes_two_linked_episodes_that_replay(display: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    env = play_env(display)
    play = subprocess.Popen([str(BIN / "gymrec-play"), "BreakoutNoFrameskip-v4", "--fps", "30", "--spool", str(spool),
                             "--seed", "2"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        window = find_window(display, play, 160 * SCALE)
        _x(display, "xdotool", "windowfocus", "--sync", window)
        _x(display, "xdotool", "key", "n")
        _x(display, "xdotool", "keydown", "Right")
        time.sleep(1.5)
        _x(display, "xdotool", "keyup", "Right")
        _x(display, "xdotool", "keydown", "r")  # hold R: the game runs backwards ...
        time.sleep(0.5)
        _x(display, "xdotool", "keyup", "r")  # ... and plays on from the frame on screen
        _x(display, "xdotool", "keydown", "Left")
        time.sleep(0.5)
        _x(display, "xdotool", "keyup", "Left")
        _x(display, "xdotool", "key", "Escape")
        out, err = play.communicate(timeout=30)
    finally:
        if play.poll() is None:
            play.kill()
            play.wait()
    assert play.returncode == 0, err
    parent, branch = (Episode(Path(line)) for line in out.splitlines() if line.endswith(".zarr"))
    assert parent.end_reason == "branched" and branch.attrs.parent_episode_id == parent.attrs.episode_id
    assert branch.attrs.branch_step == parent.attrs.branched_at and 0 < (branch.attrs.branch_step or 0) < parent.length
    assert BREAKOUT_ACTIONS["LEFT"] in branch.actions()[branch.attrs.branch_step :]
    replay = subprocess.run([str(BIN / "gymrec-replay"), "--all", "--spool", str(spool)], cwd=tmp_path,
                            env={**os.environ, "SDL_VIDEODRIVER": "dummy"}, capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0 and replay.stdout.count("identical") == 2, replay.stdout + replay.stderr
