"""What the window draws besides the game: the status bar below it and the modal panels over it.

The game area is never drawn over while the game runs: the status bar is a strip of its own below
the frame (the window is that much taller), so a screenshot of the game area is the observation
scaled by an integer factor, pixel for pixel. Panels (start gate, summary, help) appear only while
the game is stopped, over a dimmed frame.

Text is rendered once per change and cached: the step and return change every step and are rendered
then (a font render is ~0.1 ms), the measured fps at most every ``REFRESH_S`` (it jitters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import pygame

BAR_HEIGHT = 22
REFRESH_S = 0.25
WHITE = (255, 255, 255)
RED = (230, 30, 30)
AMBER = (240, 180, 40)
GREY = (150, 150, 150)
BAR_BG = (24, 24, 24)
_SHADE = (0, 0, 0, 200)
_DIM = (0, 0, 0, 150)


@dataclass(frozen=True)
class HudState:
    fps_target: float
    step: int
    episode_return: float
    episode: int
    recording: bool
    env_id: str
    actor: str = ""  # who is in control, when that can change (takeover); "" shows nothing
    notice: str = ""  # a short word to the player (a refused rewind); shown instead of the figures


@dataclass(frozen=True)
class Mark:
    """The state shown at the bar's right end."""

    text: str
    color: tuple[int, int, int]
    dot: bool = False


REC = Mark("REC", RED, dot=True)
PAUSED = Mark("PAUSED", AMBER)
READY = Mark("READY", GREY)
ENDED = Mark("ENDED", GREY)
REWIND = Mark("<< REWIND", AMBER)
SHOWING = Mark("", GREY)  # an agent in a window that records nothing of note: no mark


def wrap(font: pygame.font.Font, line: str, width: int | None) -> list[str]:
    """``line`` broken at spaces into pieces no wider than ``width`` (a single long word stays whole)."""
    if width is None or font.size(line)[0] <= width:
        return [line]
    out: list[str] = []
    for word in line.split(" "):
        if out and font.size(f"{out[-1]} {word}")[0] <= width:
            out[-1] = f"{out[-1]} {word}"
        else:
            out.append(word)
    return out


def panel(font: pygame.font.Font, lines: list[str], pad: int = 8, width: int | None = None) -> pygame.Surface:
    """Text lines on a dark translucent background, rendered once; wrapped to fit ``width`` px in all."""
    room = None if width is None else max(1, width - 2 * pad)
    texts = [font.render(piece, True, WHITE) for line in lines for piece in wrap(font, line, room)]
    width = max((t.get_width() for t in texts), default=0) + 2 * pad
    height = sum(t.get_height() for t in texts) + 2 * pad
    surface = pygame.Surface((width, height), pygame.SRCALPHA)
    surface.fill(_SHADE)
    y = pad
    for text in texts:
        surface.blit(text, (pad, y))
        y += text.get_height()
    return surface


class StatusBar:
    """The strip below the game: step, return, fps, episode and env on the left; the state mark, who
    is in control (``--takeover``) and the step-mode tag on the right.

    Nothing is ever drawn over anything else: when the window is narrow, the left parts are dropped
    whole, least useful first (the env id, which the title shows, then the episode, then fps), never
    the step. The step and return are rendered when they change, so the bar always names the step of
    the frame above it; only the measured fps is refreshed at most every ``REFRESH_S``.
    """

    def __init__(self, font: pygame.font.Font, tag: str = "") -> None:
        self.font = font
        self.tag = tag  # e.g. "STEP MODE": a standing state the player chose, shown on the right
        self._cache: dict[tuple[object, ...], pygame.Surface] = {}
        self._fps_text = ""
        self._fps_at = float("-inf")
        self.placed: list[tuple[str, pygame.Rect]] = []  # what the last draw put where (tests check no overlap)

    def _text(self, text: str, color: tuple[int, int, int] = WHITE) -> pygame.Surface:
        key = (text, color)
        surface = self._cache.get(key)
        if surface is None:
            if len(self._cache) > 256:  # step texts change every frame: keep only a few
                self._cache.clear()
            surface = self._cache[key] = self.font.render(text, True, color)
        return surface

    def _fps(self, hud: HudState, fps: float, now: float) -> str:
        if not self._fps_text or now - self._fps_at >= REFRESH_S:
            self._fps_text, self._fps_at = f"{fps:.0f}/{hud.fps_target:g} fps", now
        return self._fps_text

    def left_parts(self, hud: HudState, fps: float, now: float) -> list[str]:
        """The left texts in drawing order; ``fit`` drops them by ``DROP_ORDER``."""
        return [hud.env_id, f"ep {hud.episode}", f"step {hud.step}  return {hud.episode_return:g}", self._fps(hud, fps, now)]

    def right_parts(self, hud: HudState, mark: Mark) -> list[tuple[str, tuple[int, int, int]]]:
        """Right to left: the mark, who is in control, the tag."""
        parts = [(mark.text, mark.color)] if mark.text else []
        if hud.actor:
            parts.append((hud.actor.upper(), ACTOR_COLORS.get(hud.actor, WHITE)))
        if self.tag:
            parts.append((self.tag, AMBER))
        return parts

    def draw(self, screen: pygame.Surface, top: int, hud: HudState, fps: float, now: float, mark: Mark) -> None:
        width = screen.get_width()
        screen.fill(BAR_BG, pygame.Rect(0, top, width, BAR_HEIGHT))
        self.placed = []
        x = width - 6
        for index, (text, color) in enumerate(self.right_parts(hud, mark)):
            label = self._text(text, color)
            x -= label.get_width()
            self.placed.append((text, screen.blit(label, (x, top + (BAR_HEIGHT - label.get_height()) // 2))))
            if index == 0 and mark.dot:
                radius = label.get_height() // 3
                pygame.draw.circle(screen, color, (x - radius - 4, top + BAR_HEIGHT // 2), radius)
                x -= 2 * radius + 4
            x -= GAP
        if hud.notice:  # a word to the player (a refused rewind) stands instead of the figures
            label = self._text(hud.notice, AMBER)
            self.placed.append((hud.notice, screen.blit(label, (4, top + (BAR_HEIGHT - label.get_height()) // 2),
                                                        pygame.Rect(0, 0, max(0, x - 4), label.get_height()))))
            return
        texts = self.left_parts(hud, fps, now)
        left = [self._text(t) for t in texts]
        shown = fit([s.get_width() for s in left], x - 4)
        if sum(left[i].get_width() + GAP for i in shown) - GAP > x - 4:  # only the step is left: say it shorter
            left[2] = self._text(f"{hud.step}  ret {hud.episode_return:g}")
        at = 4
        for index in shown:
            self.placed.append((texts[index], screen.blit(left[index], (at, top + (BAR_HEIGHT - left[index].get_height()) // 2))))
            at += left[index].get_width() + GAP


GAP = 12  # px between the bar's parts
DROP_ORDER = (0, 1, 3)  # env id (the title says it), episode, fps; the step and return stay
ACTOR_COLORS: Mapping[str, tuple[int, int, int]] = MappingProxyType({"agent": (120, 200, 255), "human": (120, 230, 120)})


def fit(widths: list[int], room: int) -> list[int]:
    """Indices of the parts to show in ``room`` px, dropping ``DROP_ORDER`` first until they fit."""
    shown = list(range(len(widths)))
    for drop in DROP_ORDER:
        if sum(widths[i] for i in shown) + GAP * (len(shown) - 1) <= room:
            break
        shown.remove(drop)
    return shown


def dim(screen: pygame.Surface, area: pygame.Rect) -> None:
    """Darken the game area: the game is stopped (paused, help, start gate, summary)."""
    shade = pygame.Surface(area.size, pygame.SRCALPHA)
    shade.fill(_DIM)
    screen.blit(shade, area.topleft)


def centered(screen: pygame.Surface, area: pygame.Rect, surface: pygame.Surface) -> None:
    screen.blit(surface, surface.get_rect(center=area.center))
