"""A real X window: gymrec-play under Xvfb, driven by real key presses from xdotool.

Everything else in the suite posts pygame events to a dummy video driver; this test goes through
the X server, the SDL x11 driver and the keyboard focus, as a person at the keyboard would.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gymrec.shared.episode import Episode
from tests.conftest import BIN

TOOLS = ("Xvfb", "xdotool", "import")
MISSING = [tool for tool in TOOLS if shutil.which(tool) is None]
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {', '.join(MISSING)} (Debian: xvfb, xdotool, imagemagick)")

BREAKOUT_ACTIONS = {"NOOP": 0, "FIRE": 1, "RIGHT": 2, "LEFT": 3}  # ALE/Breakout-v5's minimal action set
SCALE = 3  # gymrec-play's default --scale


@pytest.fixture
def display() -> Iterator[str]:
    """An Xvfb server on a display number it picks itself (-displayfd), so parallel runs never clash."""
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 15)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(timeout=10)


def _x(display: str, *args: str, timeout: float = 15) -> str:
    out = subprocess.run(list(args), env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                         timeout=timeout, check=True)
    return out.stdout


def _geometry(display: str, window: str) -> dict[str, int]:
    shell = _x(display, "xdotool", "getwindowgeometry", "--shell", window)
    return {k: int(v) for k, v in (line.split("=") for line in shell.split()) if k in ("X", "Y", "WIDTH", "HEIGHT")}


def _find_window(display: str, play: subprocess.Popen[str], timeout: float = 20) -> str:
    """The game window (SDL makes short-lived helper windows too: pick the one of the frame's size).

    Found by class: xdotool 3.2016's --name does not match SDL's UTF-8 window titles.
    """
    env = {**os.environ, "DISPLAY": display}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--class", "gymrec"], env=env, capture_output=True, text=True,
                               timeout=10)
        for window in found.stdout.split():
            try:
                if _geometry(display, window)["WIDTH"] == 160 * SCALE:
                    return window
            except subprocess.CalledProcessError:
                continue  # gone already
        if play.poll() is not None:
            raise AssertionError(f"gymrec-play exited {play.returncode} before its window appeared: {play.communicate()[1]}")
        time.sleep(0.1)
    raise AssertionError("no gymrec window appeared")


def test_real_key_presses_are_recorded(display: str, tmp_path: Path) -> None:
    spool, shot = tmp_path / "spool", tmp_path / "shot.png"
    env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}  # SDL picks x11
    env |= {"DISPLAY": display, "SDL_AUDIODRIVER": "dummy"}
    play = subprocess.Popen([str(BIN / "gymrec-play"), "ALE/Breakout-v5", "--spool", str(spool), "--seed", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = _find_window(display, play)
        _x(display, "xdotool", "windowfocus", "--sync", window)
        _x(display, "xdotool", "key", "space")
        # A tick is 67 ms at 15 steps/s: keys of one tick combine (LEFT+FIRE is LEFT in Breakout).
        time.sleep(0.3)
        for key in ("Left", "Right"):
            _x(display, "xdotool", "keydown", key)
            time.sleep(0.5)
            _x(display, "xdotool", "keyup", key)
            time.sleep(0.2)
        _x(display, "import", "-window", "root", str(shot))
        geometry = _geometry(display, window)
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

    # The screenshot shows the game: the window's pixels, scaled back down, are one of the recorded frames.
    x, y, w, h = geometry["X"], geometry["Y"], geometry["WIDTH"], geometry["HEIGHT"]
    pixels = np.asarray(Image.open(shot).convert("RGB"))[y : y + h, x : x + w]
    assert pixels.shape == (210 * SCALE, 160 * SCALE, 3)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= 6 and (pixels.sum(axis=2) > 0).mean() > 0.05
    shown = pixels[SCALE // 2 :: SCALE, SCALE // 2 :: SCALE]
    frames = episode.obs(episode.attrs.image_key, 0, episode.length + 1)
    best = max(float((frame == shown).all(axis=2).mean()) for frame in frames)
    print(f"\nreal window: {episode.length} steps, FIRE/LEFT/RIGHT recorded, screenshot = a recorded frame at {best:.1%}")
    assert best > 0.9, f"the screenshot matches no recorded frame (best {best:.0%} of pixels)"
