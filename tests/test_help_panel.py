"""F1 help and the status bar fit every window gymrec opens, down to 160 px x scale 2 (SDL dummy driver).

The help is checked from the builtin keymaps themselves (every binding of the active section), plus a
custom keymap: each key's label must lie inside the game area once centred there. The real-window
test (tests/test_real_window.py) checks the same on screenshots of a real X window.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pygame
import pytest

from gymrec.recorder.helppanel import HelpPanel, fit, sections
from gymrec.recorder.statusbar import PAUSED, REC, REWIND, HudState, panel, wrap
from gymrec.recorder.window import GameWindow, start_lines
from gymrec.shared.keymaps.keymap import load_keymap

# (backend, keymap section, frame (H, W)): Atari's 160 px is the narrowest frame gymrec shows.
GAMES = [("ale", "bindings", (210, 160)), ("vizdoom", "bindings", (240, 320)), ("retro", "genesis", (224, 320))]


@pytest.fixture(autouse=True)
def fonts() -> Iterator[None]:
    pygame.font.init()
    yield
    pygame.font.quit()


def keymap_keys(backend: str, section: str) -> dict[str, str]:
    keymap = load_keymap(backend)
    (bindings,) = [b for name, b in keymap.sections.items() if name.lower() == section]
    return {b.chord.text: b.targets[0] for b in bindings}


def assert_every_key_inside(panel: HelpPanel, keys: list[str], area: pygame.Rect) -> None:
    placed = panel.surface.get_rect(center=area.center)
    labels = {label.text: label.rect.move(placed.topleft) for label in panel.labels if label.is_key}
    for key in keys:
        assert key in labels, f"{key!r} is not in the help"
        assert area.contains(labels[key]), f"{key!r} at {labels[key]} is outside the game area {area}"


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize(("backend", "section", "shape"), GAMES)
def test_help_shows_every_bound_key_inside_the_window(backend: str, section: str, shape: tuple[int, int],
                                                      scale: int) -> None:
    keys = keymap_keys(backend, section)
    half = list(keys)[::2]  # some bound keys the game lacks: those are listed too, muted
    effects = {k: v for k, v in keys.items() if k not in half}
    area = pygame.Rect(0, 0, shape[1] * scale, shape[0] * scale)
    panel = fit(sections(effects, half, takeover=True), area.size)
    assert_every_key_inside(panel, [*keys, "Esc", "P", "Backspace", "F1", "hold R", "T"], area)
    assert panel.font_size >= 12


def test_a_long_custom_keymap_still_fits_by_stepping_the_font_down() -> None:
    effects = {f"{mod}+{key}": f"ACTION_{i}" for i, (mod, key) in
               enumerate((m, k) for m in ("alt", "ctrl", "shift") for k in "abcdefghijklmnopqrstuvwxyz")}
    area = pygame.Rect(0, 0, 320, 420)
    panel = fit(sections(effects, [], takeover=False), area.size)
    assert panel.font_size < 20  # 78 entries do not fit 320 x 420 at the usual size
    assert_every_key_inside(panel, list(effects), area)


def test_plain_lines_still_make_a_help(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    window = GameWindow("t", fps=1000, scale=2, help_lines=["left: LEFT", "space: FIRE"])
    window.open((210, 160, 3))
    try:
        assert window.help_panel is not None
        assert_every_key_inside(window.help_panel, ["left", "space", "Esc"], window.game_area)
    finally:
        window.close()


def _bar(monkeypatch: pytest.MonkeyPatch, width: int, hud: HudState, tag: str = "") -> GameWindow:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    window = GameWindow("t", fps=60, scale=width // 160, help_lines=[], tag=tag)
    window.open((210, 160, 3))
    return window


@pytest.mark.parametrize("width", [320, 480])
@pytest.mark.parametrize("mark", [REC, PAUSED, REWIND])
@pytest.mark.parametrize(("actor", "tag"), [("agent", ""), ("human", ""), ("", "STEP MODE")])
def test_bar_parts_never_overlap(width: int, mark: object, actor: str, tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    hud = HudState(60, 123456, -21.0, 12, True, "BreakoutNoFrameskip-v4", actor=actor)
    window = _bar(monkeypatch, width, hud, tag)
    try:
        window._render(np.zeros((210, 160, 3), np.uint8), hud, mark)  # type: ignore[arg-type]
        assert window._bar is not None
        placed = window._bar.placed
        texts = [text for text, _ in placed]
        for i, (_, a) in enumerate(placed):
            assert 0 <= a.left and a.right <= width, placed
            assert all(not a.colliderect(b) for _, b in placed[i + 1:]), placed
        assert any("123456" in t for t in texts), texts  # the step is never dropped
        for needed in (mark.text, actor.upper(), tag):  # type: ignore[attr-defined]
            assert not needed or needed in texts, texts
        if width == 480:
            assert any("fps" in t for t in texts), texts  # also while rewinding
    finally:
        window.close()


def test_takeover_start_gate_says_t() -> None:
    assert any(line.startswith("T: take control") for line in start_lines("", takeover=True))
    assert not any(line.startswith("T:") for line in start_lines("", takeover=False))


def test_panels_wrap_to_the_narrowest_window() -> None:
    font = pygame.font.Font(None, 20)
    line = "any key: next episode    Backspace: discard it    Esc: quit"
    assert font.size(line)[0] > 320 - 16  # the case this guards: one line wider than the window
    surface = panel(font, ["episode 1: 1234 steps", "", line], width=320 - 16)
    assert surface.get_width() <= 320 - 16
    pieces = wrap(font, line, 300)
    assert len(pieces) > 1 and all(font.size(piece)[0] <= 300 for piece in pieces)
    assert " ".join(pieces).split() == line.split()  # nothing lost
