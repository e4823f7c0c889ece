"""What the window draws besides the game: the status bar below it and the modal panels over it.

The game area is never drawn over while the game runs: the status bar is a strip of its own below
the frame (the window is that much taller), so a screenshot of the game area is the observation
scaled by an integer factor, pixel for pixel. Panels (start gate, summary, help) appear only while
the game is stopped, over a dimmed frame.

Text is rendered once per change: the bar's text changes every step, so it is re-rendered only when
its slow-changing part changes or every ``REFRESH_S`` (a font render is ~0.1 ms; 60 of them a second
are not free on a loaded 2-core box).
"""

from __future__ import annotations

from dataclasses import dataclass

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


def panel(font: pygame.font.Font, lines: list[str], pad: int = 8) -> pygame.Surface:
    """Text lines on a dark translucent background, rendered once."""
    texts = [font.render(line, True, WHITE) for line in lines]
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
    """The strip below the game: env, episode, step, return, fps on the left; the state mark on the right."""

    def __init__(self, font: pygame.font.Font) -> None:
        self.font = font
        self._text: pygame.Surface | None = None
        self._key: tuple[object, ...] = ()
        self._at = float("-inf")
        self._marks: dict[Mark, pygame.Surface] = {}

    def text_surface(self, hud: HudState, fps: float, now: float) -> pygame.Surface:
        key = (hud.env_id, hud.episode, hud.recording, hud.fps_target, hud.actor, hud.notice)
        if self._text is None or key != self._key or now - self._at >= REFRESH_S:
            actor = f"  {hud.actor.upper()}" if hud.actor else ""  # who is in control (--takeover)
            text = (f"{hud.env_id}  ep {hud.episode}  step {hud.step}  return {hud.episode_return:g}  "
                    f"{fps:.0f}/{hud.fps_target:g} fps{actor}")
            self._text = self.font.render(hud.notice or text, True, AMBER if hud.notice else WHITE)
            self._key, self._at = key, now
        return self._text

    def draw(self, screen: pygame.Surface, top: int, hud: HudState, fps: float, now: float, mark: Mark) -> None:
        width = screen.get_width()
        screen.fill(BAR_BG, pygame.Rect(0, top, width, BAR_HEIGHT))
        text = self.text_surface(hud, fps, now)
        screen.blit(text, (4, top + (BAR_HEIGHT - text.get_height()) // 2))
        if not mark.text:
            return
        label = self._marks.get(mark)
        if label is None:
            label = self._marks[mark] = self.font.render(mark.text, True, mark.color)
        x = width - label.get_width() - 6
        y = top + (BAR_HEIGHT - label.get_height()) // 2
        # The mark wins over the text when the window is narrow: clear under it first.
        screen.fill(BAR_BG, pygame.Rect(x - 16, top, width - x + 16, BAR_HEIGHT))
        screen.blit(label, (x, y))
        if mark.dot:
            radius = label.get_height() // 3
            pygame.draw.circle(screen, mark.color, (x - radius - 4, top + BAR_HEIGHT // 2), radius)


def dim(screen: pygame.Surface, area: pygame.Rect) -> None:
    """Darken the game area: the game is stopped (paused, help, start gate, summary)."""
    shade = pygame.Surface(area.size, pygame.SRCALPHA)
    shade.fill(_DIM)
    screen.blit(shade, area.topleft)


def centered(screen: pygame.Surface, area: pygame.Rect, surface: pygame.Surface) -> None:
    screen.blit(surface, surface.get_rect(center=area.center))
