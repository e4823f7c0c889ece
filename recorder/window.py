"""The pygame window: shows frames scaled up, a small HUD and a help overlay, and reads the keyboard.

``next_tick`` is the game loop's hot path at up to 60 Hz, so everything that can be made once is
made in ``open()`` (fonts, the frame surface, the help panel, the PAUSED banner) and HUD text is
re-rendered only when it changes meaningfully or every ``HUD_REFRESH_S``.

Commands act in the order they were typed: events are fed one by one, and a command stops the feed
so that "P, P" pauses for at least one frame before unpausing, rather than cancelling out.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import pygame

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.input import NO_COMMANDS, Commands, InputState, process_event, take_commands, take_step_keys
from gymrec.shared.errors import DisplayError

log = logging.getLogger(__name__)

HUD_REFRESH_S = 0.25
CONTROL_LINES = ("Esc: quit    P: pause    Backspace: discard episode    F1: help",)
_WHITE = (255, 255, 255)
_RED = (230, 30, 30)
_SHADE = (0, 0, 0, 160)


@dataclass(frozen=True)
class HudState:
    fps_target: float
    step: int
    episode_return: float
    episode: int
    recording: bool
    env_id: str


@dataclass(frozen=True)
class TickInput:
    keys: frozenset[str]  # the keys acting on this step: held or pressed since the last one
    quit: bool
    discard: bool
    paused_for: float  # seconds this call spent paused


def _panel(font: pygame.font.Font, lines: list[str], pad: int = 4) -> pygame.Surface:
    """Text lines on a translucent dark background, rendered once."""
    texts = [font.render(line, True, _WHITE) for line in lines]
    width = max((t.get_width() for t in texts), default=0) + 2 * pad
    height = sum(t.get_height() for t in texts) + 2 * pad
    panel = pygame.Surface((width, height), pygame.SRCALPHA)
    panel.fill(_SHADE)
    y = pad
    for text in texts:
        panel.blit(text, (pad, y))
        y += text.get_height()
    return panel


class GameWindow:
    """One window for interactive play; ``open`` it, call ``next_tick`` once per env step."""

    def __init__(
        self, title: str, fps: float, scale: int, help_lines: list[str], clock: FixedRateClock | None = None
    ) -> None:
        if scale < 1:
            raise ValueError(f"scale must be at least 1, got {scale!r}")
        self.title = title
        self.scale = int(scale)
        self.help_lines = list(help_lines)
        self.clock = clock if clock is not None else FixedRateClock(fps)
        self.paused = False
        self.help_visible = False
        self._state = InputState()
        self._queue: deque[pygame.event.Event] = deque()
        self._screen: pygame.Surface | None = None
        self._frame_surface: pygame.Surface | None = None
        self._frame_hw: tuple[int, int] = (0, 0)
        self._font: pygame.font.Font | None = None
        self._help: pygame.Surface | None = None
        self._banner: pygame.Surface | None = None
        self._rec: pygame.Surface | None = None
        self._hud: pygame.Surface | None = None
        self._hud_key: tuple[object, ...] = ()
        self._hud_at = float("-inf")

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self, frame_shape: tuple[int, ...]) -> None:
        """Open the window for frames of ``frame_shape`` (H, W[, C]); raise DisplayError if impossible."""
        try:
            # display and font only: initialising audio too (pygame.init) would open a sound device.
            pygame.display.init()
            pygame.font.init()
            self._set_mode(frame_shape)
        except pygame.error as e:
            pygame.display.quit()
            raise DisplayError(
                f"no display available ({e})", "run with --headless --agent random, or set DISPLAY"
            ) from e
        pygame.display.set_caption(self.title)
        self._font = pygame.font.Font(None, 20)
        big = pygame.font.Font(None, 48)
        self._help = _panel(self._font, [*CONTROL_LINES, "", *self.help_lines])
        self._banner = big.render("PAUSED", True, _WHITE)
        self._rec = self._font.render("REC", True, _RED)
        self._hud = None

    def _set_mode(self, frame_shape: tuple[int, ...]) -> None:
        if len(frame_shape) not in (2, 3) or frame_shape[0] < 1 or frame_shape[1] < 1:
            raise ValueError(f"frame shape must be (H, W) or (H, W, C), got {frame_shape!r}")
        h, w = int(frame_shape[0]), int(frame_shape[1])
        self._screen = pygame.display.set_mode((w * self.scale, h * self.scale))
        self._frame_surface = pygame.Surface((w, h), depth=self._screen.get_bitsize())
        self._frame_hw = (h, w)

    def close(self) -> None:
        if self._screen is not None:
            pygame.font.quit()
            pygame.display.quit()
        self._screen = self._frame_surface = None

    def __enter__(self) -> GameWindow:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- the tick -----------------------------------------------------------------------------

    def next_tick(self, frame: np.ndarray, hud: HudState) -> TickInput:
        """Wait for the tick, read input (pausing here while paused), show ``frame``; return the keys."""
        if self._screen is None:
            raise RuntimeError("GameWindow.next_tick() before open()")
        self.clock.wait()
        quit_, discard, paused_for = False, False, 0.0
        while (commands := self._poll()).any:
            if commands.help:
                self.help_visible = not self.help_visible
            discard = discard or commands.discard
            if commands.pause and not commands.quit:
                waited, quit_, discarded = self._pause(frame, hud)
                paused_for += waited
                discard = discard or discarded
            if quit_ or commands.quit:
                keys, self._state = take_step_keys(self._state)
                return TickInput(keys, True, discard, paused_for)
        self._render(frame, hud)
        keys, self._state = take_step_keys(self._state)
        return TickInput(keys, False, discard, paused_for)

    def _poll(self) -> Commands:
        """Feed events to the input model until one yields a command; the rest stay queued."""
        if not self._queue:
            self._queue.extend(pygame.event.get())
        while self._queue:
            self._state = process_event(self._state, self._queue.popleft())
            commands, self._state = take_commands(self._state)
            if commands.any:
                return commands
        return NO_COMMANDS

    def _pause(self, frame: np.ndarray, hud: HudState) -> tuple[float, bool, bool]:
        """Keep showing ``frame`` at the normal rate until unpaused; return (seconds, quit, discard).

        Discarding while paused also unpauses: the game loop starts a fresh episode right away.
        """
        self.paused = True
        started = self.clock.now()
        try:
            while True:
                self._render(frame, hud)
                self.clock.wait()
                while (commands := self._poll()).any:
                    if commands.help:
                        self.help_visible = not self.help_visible
                    if commands.quit or commands.discard or commands.pause:
                        return self.clock.now() - started, commands.quit, commands.discard
                # Presses during the pause must not act on the first step after it.
                _, self._state = take_step_keys(self._state)
        finally:
            self.paused = False

    # --- drawing ------------------------------------------------------------------------------

    def _render(self, frame: np.ndarray, hud: HudState) -> None:
        assert self._screen is not None and self._frame_surface is not None
        if frame.shape[:2] != self._frame_hw:
            log.info("frame size changed from %s to %s; resizing the window", self._frame_hw, frame.shape[:2])
            self._set_mode(frame.shape)
        self._blit_frame(frame)
        screen = self._screen
        screen.blit(self._hud_surface(hud), (0, 0))
        if hud.recording and self._rec is not None:
            x = screen.get_width() - self._rec.get_width() - 6
            radius = self._rec.get_height() // 3
            pygame.draw.circle(screen, _RED, (x - radius - 4, 4 + self._rec.get_height() // 2), radius)
            screen.blit(self._rec, (x, 4))
        if self.paused and self._banner is not None:
            rect = self._banner.get_rect(center=screen.get_rect().center)
            screen.blit(self._banner, rect)
        if self.help_visible and self._help is not None:
            screen.blit(self._help, (0, screen.get_height() - self._help.get_height()))
        pygame.display.flip()

    def _blit_frame(self, frame: np.ndarray) -> None:
        assert self._screen is not None and self._frame_surface is not None
        if frame.ndim == 2:
            frame = frame[:, :, None]
        if frame.shape[2] == 1:  # grayscale: a zero-stride view, no copy
            frame = np.broadcast_to(frame, (*frame.shape[:2], 3))
        elif frame.shape[2] == 4:
            frame = frame[:, :, :3]
        elif frame.shape[2] != 3:
            raise ValueError(f"frames must be H×W, H×W×1, H×W×3 or H×W×4, got {frame.shape}")
        # surfarray is indexed [x, y]; swapaxes is a view, so nothing is copied here either.
        pygame.surfarray.blit_array(self._frame_surface, frame.swapaxes(0, 1))
        if self.scale == 1:
            self._screen.blit(self._frame_surface, (0, 0))
        else:
            pygame.transform.scale(self._frame_surface, self._screen.get_size(), self._screen)

    def _hud_surface(self, hud: HudState) -> pygame.Surface:
        assert self._font is not None
        now = self.clock.now()
        # Step and fps change every tick; re-render for them only a few times a second.
        key = (hud.env_id, hud.episode, hud.recording, hud.fps_target)
        if self._hud is None or key != self._hud_key or now - self._hud_at >= HUD_REFRESH_S:
            text = (
                f"{hud.env_id}  ep {hud.episode}  step {hud.step}  return {hud.episode_return:g}  "
                f"{self.clock.measured_fps():.0f}/{hud.fps_target:g} fps"
            )
            self._hud = _panel(self._font, [text], pad=3)
            self._hud_key, self._hud_at = key, now
        return self._hud
