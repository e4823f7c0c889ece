"""F1 help in a real X window (Xvfb): every bound key of the active keymap is drawn inside the window.

For ALE (160 px frames, the narrowest), VizDoom and retro, at --scale 2 and 3 (``make test``: 2 only): gymrec-play is
started, the episode started with a key bound to nothing, F1 pressed, and the root window captured.
Each key's name is then rendered with the font the panel uses and looked for in the window's part
of the screenshot: its fully covered pixels must be there, in the key colour, exactly. A key cut by
the window edge, drawn over, or missing from the panel fails.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pygame
import pytest
from PIL import Image

from gymrec.recorder.helppanel import FONT_SIZES, KEY, MUTED
from gymrec.recorder.statusbar import BAR_HEIGHT
from gymrec.shared.keymaps.keymap import load_keymap
from tests.xwindow import find_window, geometry, needs, start_play, stop, x, xvfb

pytestmark = [pytest.mark.slow, needs("Xvfb", "xdotool", "import")]  # an X server, four runs (six under make stress): make test only

# (env id, keymap backend, keymap section, frame width, frame height)
GAMES = [("ALE/Breakout-v5", "ale", "bindings", 160, 210), ("VizdoomBasic-v1", "vizdoom", "bindings", 320, 240),
         ("Airstriker-Genesis-v0", "retro", "genesis", 320, 224)]
GYMREC_KEYS = ("Esc", "P", "Backspace", "F1", "hold R")
STRESS = os.environ.get("GYMREC_STRESS", "") not in ("", "0")


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb() as number:
        yield number


def bound_keys(backend: str, section: str) -> list[str]:
    keymap = load_keymap(backend)
    (bindings,) = [b for name, b in keymap.sections.items() if name.lower() == section]
    return [b.chord.text for b in bindings]


def drawn(image: np.ndarray, text: str, color: tuple[int, int, int], font: pygame.font.Font) -> bool:
    """Whether ``text``, rendered as the panel renders it, appears in ``image`` pixel for pixel
    (its fully covered pixels, which are exactly ``color`` whatever lies under them)."""
    alpha = pygame.surfarray.array_alpha(font.render(text, True, color)).T
    ys, xs = np.nonzero(alpha == 255)
    mask = np.all(image == np.asarray(color, np.uint8), axis=2)
    padded = np.zeros((mask.shape[0] + alpha.shape[0], mask.shape[1] + alpha.shape[1]), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    cy, cx = np.nonzero(mask)
    oy, ox = cy - ys[0], cx - xs[0]
    keep = (oy >= 0) & (ox >= 0)
    oy, ox = oy[keep], ox[keep]
    return bool(padded[oy[:, None] + ys[None, :], ox[:, None] + xs[None, :]].all(axis=1).any())


# make test: every game at --scale 2 (the narrowest windows); make stress: all six.
CASES = [pytest.param(*game, scale, marks=pytest.mark.skipif(
    not STRESS and scale == 3, reason="make stress only (GYMREC_STRESS=1): the games at --scale 3"))
    for scale in (2, 3) for game in GAMES]  # fmt: skip


@pytest.mark.parametrize(("env_id", "backend", "section", "width", "height", "scale"), CASES)
def test_help_shows_every_bound_key_in_a_real_window(display: str, tmp_path: Path, env_id: str, backend: str,
                                                     section: str, width: int, height: int, scale: int) -> None:
    shot = tmp_path / "help.png"
    play = start_play(display, [env_id, "--scale", str(scale), "--spool", str(tmp_path / "spool"), "--seed", "1"], tmp_path)
    try:
        window = find_window(display, play, width * scale, timeout=60)
        x(display, "xdotool", "windowfocus", "--sync", window)
        time.sleep(0.5)
        x(display, "xdotool", "key", "n")  # starts the episode; F1 means nothing at the start gate
        time.sleep(0.5)
        x(display, "xdotool", "key", "F1")
        time.sleep(1.0)
        x(display, "import", "-window", "root", str(shot))
        where = geometry(display, window)
        x(display, "xdotool", "key", "Escape")
        _, err = play.communicate(timeout=30)
    finally:
        stop(play)
    assert play.returncode == 0, err
    left, top, w, h = where["X"], where["Y"], where["WIDTH"], where["HEIGHT"]
    assert (w, h) == (width * scale, height * scale + BAR_HEIGHT)
    image = np.asarray(Image.open(shot).convert("RGB"))[top : top + h, left : left + w]
    Image.fromarray(image).save(tmp_path / f"help-{backend}-x{scale}.png")  # kept for a person to look at
    pygame.font.init()
    try:
        fonts = [pygame.font.Font(None, size) for size in FONT_SIZES]
        assert not any(drawn(image, "xyzzy", KEY, font) for font in fonts)  # the search finds only what is there
        missing = [key for key in (*bound_keys(backend, section), *GYMREC_KEYS)
                   if not any(drawn(image, key, color, font) for font in fonts for color in (KEY, MUTED))]
    finally:
        pygame.font.quit()
    assert not missing, f"not drawn inside the window: {missing} (screenshot {tmp_path})"
