"""The pygame window: the game scaled by an integer factor, a status bar below it, and the keyboard.

Layout: the game area is the frame scaled by ``scale`` (nearest neighbour, so a screenshot of it is
the observation pixel for pixel); the status bar (``recorder.statusbar``) is a strip of its own below.
Nothing is drawn over a running game. The game stops for the start gate, the end-of-episode summary,
pause (P) and help (F1): those dim the game area and show a panel over it.

``next_tick`` is the game loop's hot path at up to 60 Hz, so everything that can be made once is
made in ``open()``. Commands act in the order they were typed: events are fed one by one, and a
command stops the feed so that "P, P" pauses for at least one frame before unpausing.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType

import numpy as np
import pygame

from gymrec.recorder.choices import EndChoice
from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.gamepad import Gamepads
from gymrec.recorder.helppanel import HelpPanel, Section, fit, plain_sections
from gymrec.recorder.input import (
    NO_COMMANDS,
    Commands,
    InputState,
    process_event,
    take_commands,
    take_step_keys,
)
from gymrec.recorder.input_log import InputLog
from gymrec.recorder.statusbar import (
    BAR_HEIGHT,
    ENDED,
    PAUSED,
    READY,
    REC,
    REWIND,
    HudState,
    Mark,
    StatusBar,
    centered,
    dim,
    panel,
)
from gymrec.shared.errors import DisplayError

__all__ = ["BAR_HEIGHT", "EndChoice", "GameWindow", "HudState", "TickInput"]

log = logging.getLogger(__name__)

START_LINE = "press any key or button to start"
# A frame drawn late stays up at least this many periods (the schedule shifts instead): a player can
# only answer a frame that was on screen.
MIN_SHOWN_PERIODS = 0.5
TAKEOVER_LINE = "T: take control from the agent (T again gives it back)"
PANEL_MARGIN = 16  # px between a panel and the edges of the game area


def start_lines(notice: str, takeover: bool) -> list[str]:
    """The start gate's text; with ``--takeover`` the agent plays first, so it says how to take over."""
    lines = [notice, ""] if notice else []
    return [*lines, START_LINE, *([TAKEOVER_LINE] if takeover else []), "", "Esc: quit    F1 during play: help"]


@dataclass(frozen=True)
class TickInput:
    keys: frozenset[str]  # the keys acting on this step: held or pressed since the last one
    quit: bool
    discard: bool
    paused_for: float  # seconds this call spent paused (pause or help)
    shown_ns: int = 0  # time.monotonic_ns() when this frame was first on screen
    toggle: bool = False  # T was pressed (an odd number of times): hand control to the other side
    rewind: bool = False  # R went down: the caller runs ``rewind_view`` instead of a step
    late_s: float = 0.0  # how late the frame period ended (the next frame goes up that much late)


class GameWindow:
    """One window for interactive play; ``open`` it, call ``next_tick`` once per env step."""

    def __init__(
        self, title: str, fps: float, scale: int, help_lines: list[str], clock: FixedRateClock | None = None,
        help_sections: list[Section] | None = None, tag: str = "", takeover: bool = False,
    ) -> None:
        """``help_sections`` (``recorder.helppanel.sections``) replaces the plain ``help_lines``;
        ``tag`` is a standing mode shown in the status bar ("STEP MODE"); ``takeover``: the start
        gate says how to take control from the agent."""
        if scale < 1:
            raise ValueError(f"scale must be at least 1, got {scale!r}")
        self.title = title
        self.scale = int(scale)
        self.help_lines = list(help_lines)
        self.help_sections = help_sections if help_sections is not None else plain_sections(help_lines)
        self.tag = tag
        self.takeover = takeover
        self.help_panel: HelpPanel | None = None  # laid out in open(), for the game area's size
        self.clock = clock if clock is not None else FixedRateClock(fps)
        self.clock.idle = self._pump
        self.paused = False
        self.help_visible = False
        self.input_log = InputLog()
        self.shown_ns = 0  # time.monotonic_ns() of the last frame put on screen
        self._shown_at = 0.0  # the same moment on the clock's own time base
        self.gamepads = Gamepads()
        self._state = InputState()
        self._queue: deque[pygame.event.Event] = deque()
        self._screen: pygame.Surface | None = None
        self._frame_surface: pygame.Surface | None = None
        self._frame_hw: tuple[int, int] = (0, 0)
        self._game = pygame.Rect(0, 0, 0, 0)
        self._game_view: pygame.Surface | None = None
        self._font: pygame.font.Font | None = None
        self._bar: StatusBar | None = None
        self._help: pygame.Surface | None = None
        self._pause_panel: pygame.Surface | None = None

    # --- lifecycle ----------------------------------------------------------------------------

    def open(self, frame_shape: tuple[int, ...]) -> None:
        """Open the window for frames of ``frame_shape`` (H, W[, C]); raise DisplayError if impossible."""
        try:
            # display, font and game controllers only: pygame.init() would open a sound device too.
            pygame.display.init()
            pygame.font.init()
            self._set_mode(frame_shape)
        except pygame.error as e:
            pygame.display.quit()
            raise DisplayError(
                f"no display available ({e})", "run with --headless --agent random, or set DISPLAY"
            ) from e
        self.gamepads.open()
        pygame.display.set_caption(self.title)
        self._font = pygame.font.Font(None, 20)
        self._bar = StatusBar(self._font, self.tag)
        self.help_panel = fit(self.help_sections, self._game.size)
        self._help = self.help_panel.surface
        self._pause_panel = panel(self._font, ["PAUSED", "", "P: resume    F1: help    Esc: quit"],
                                  width=self._game.width - PANEL_MARGIN)

    def _set_mode(self, frame_shape: tuple[int, ...]) -> None:
        if len(frame_shape) not in (2, 3) or frame_shape[0] < 1 or frame_shape[1] < 1:
            raise ValueError(f"frame shape must be (H, W) or (H, W, C), got {frame_shape!r}")
        h, w = int(frame_shape[0]), int(frame_shape[1])
        self._screen = pygame.display.set_mode((w * self.scale, h * self.scale + BAR_HEIGHT))
        self._frame_surface = pygame.Surface((w, h), depth=self._screen.get_bitsize())
        self._frame_hw = (h, w)
        self._game = pygame.Rect(0, 0, w * self.scale, h * self.scale)
        self._game_view = self._screen.subsurface(self._game)  # scaled into directly: no per-frame surface

    @property
    def game_area(self) -> pygame.Rect:
        """Where the game is drawn, in window pixels (the status bar is below it)."""
        return self._game.copy()

    def close(self) -> None:
        if self._screen is not None:
            self.gamepads.close()
            pygame.font.quit()
            pygame.display.quit()
        self._screen = self._frame_surface = self._game_view = None

    def __enter__(self) -> GameWindow:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- input ----------------------------------------------------------------------------------

    def _pump(self) -> None:
        """Take SDL's pending events, stamp them for the input log, and queue them for the input model."""
        events = pygame.event.get()
        if not events:
            return
        stamp = time.monotonic_ns()
        for event in events:
            self.input_log.add(stamp, event)
            self.gamepads.handle(event)
            self._queue.append(event)

    def _poll(self) -> Commands:
        """Feed events to the input model until one yields a command; the rest stay queued."""
        self._pump()
        while self._queue:
            self._state = process_event(self._state, self._queue.popleft())
            commands, self._state = take_commands(self._state)
            if commands.any:
                return commands
        return NO_COMMANDS

    def _drop_latches(self) -> None:
        _, self._state = take_step_keys(self._state)

    # --- play -----------------------------------------------------------------------------------

    def next_tick(self, frame: np.ndarray, hud: HudState, wait_for_input: bool = False) -> TickInput:
        """Show ``frame`` (observation t), keep it up for one frame period while input gathers; return
        that input as action t.

        The pairing contract: the keys returned are what the player did while this frame was on
        screen, never the frame before (until 0.1 the frame was drawn after the wait and the keys of
        the previous frame came back with it: every human action was one step late). ``shown_ns`` is
        stamped right after the flip; a pause redraws the frame undimmed and restamps it. With
        ``wait_for_input`` (step mode) the frame stays up, tick after tick, until a game key or button
        is pressed or held: the env advances only when the player acts.
        """
        if self._screen is None:
            raise RuntimeError("GameWindow.next_tick() before open()")
        discard, paused_for, toggle = False, 0.0, False
        mark = REC if hud.recording else READY
        self.clock.show_slot()  # a steady phase of the schedule, however long the step took
        self._render(frame, hud, mark)
        shown = self.shown_ns
        while True:
            late = self._frame_period()  # the clock's idle pump gathers input meanwhile
            while (commands := self._poll()).any:
                discard = discard or commands.discard
                toggle = toggle != commands.takeover
                if (commands.pause or commands.help) and not commands.quit:
                    waited, quit_, discarded = self._pause(frame, hud, with_help=commands.help)
                    paused_for += waited
                    discard = discard or discarded
                    if quit_:
                        return TickInput(self._take_keys(), True, discard, paused_for, shown)
                    if not discard:  # back in play: the frame is on screen again, for a whole period
                        self._render(frame, hud, mark)
                        shown = self.shown_ns
                        late = self._frame_period()
                if commands.quit:
                    return TickInput(self._take_keys(), True, discard, paused_for, shown)
                if commands.rewind and not discard:
                    return TickInput(self._take_keys(), False, False, paused_for, shown, rewind=True)
            if discard:
                return TickInput(self._take_keys(), False, True, paused_for, shown)
            if not wait_for_input or self._state.held or self._state.latched or toggle:
                return TickInput(self._take_keys(), False, False, paused_for, shown, toggle, late_s=late)
            self._render(frame, hud, mark)  # step mode: the same frame, the status bar kept current

    def _frame_period(self) -> float:
        """Wait out the frame on screen: to its deadline, and at least half a period after it went up."""
        return self.clock.wait(not_before=self._shown_at + self.clock.period * MIN_SHOWN_PERIODS)

    def _take_keys(self) -> frozenset[str]:
        keys, self._state = take_step_keys(self._state)
        return keys

    def _pause(self, frame: np.ndarray, hud: HudState, with_help: bool) -> tuple[float, bool, bool]:
        """Show ``frame`` dimmed until unpaused; return (seconds, quit, discard).

        F1 opens help and pauses; F1 again or P resumes. Discarding also resumes: the game loop
        starts a fresh episode right away.
        """
        self.paused, self.help_visible = True, with_help
        started = self.clock.now()
        try:
            while True:
                self._render(frame, hud, PAUSED, self._help if self.help_visible else self._pause_panel)
                self.clock.wait()
                while (commands := self._poll()).any:
                    if commands.quit or commands.discard:
                        return self.clock.now() - started, commands.quit, commands.discard
                    if commands.pause or (commands.help and self.help_visible):
                        return self.clock.now() - started, False, False
                    self.help_visible = self.help_visible or commands.help
                # Presses during the pause must not act on the first step after it.
                self._drop_latches()
        finally:
            self.paused = self.help_visible = False

    def rewind_view(self, frames: Iterator[tuple[int, np.ndarray]], current: int, frame: np.ndarray,
                    hud_of: Callable[[int], HudState]) -> int | None:
        """While R is held, show ``frames`` (step, frame), one per tick: the game running backwards.

        Returns the step on screen when R is released (``current`` if none was shown), None if the
        player quit meanwhile.
        """
        step, shown = current, frame
        while True:
            if self._state.rewinding:
                found = next(frames, None)
                if found is not None:
                    step, shown = found
            self._render(shown, hud_of(step), REWIND)
            self.clock.wait()
            while (commands := self._poll()).any:
                if commands.quit:
                    return None
            if not self._state.rewinding:
                self._drop_latches()
                return step

    def wait_for_start(self, frame: np.ndarray, hud: HudState, notice: str = "") -> bool:
        """Show ``frame`` dimmed with "press any key or button to start"; False if the player quit.

        The input log starts afresh here: the episode's log begins with the press that starts it.
        """
        self.input_log.clear()
        self._drop_latches()
        gate = panel(self._fonts(), start_lines(notice, takeover=self.takeover or bool(hud.actor)), width=self._game.width - PANEL_MARGIN)
        while True:
            self._render(frame, hud, READY, gate)
            self.clock.wait()
            commands = self._poll()
            while commands.any and not commands.quit:
                commands = self._poll()  # P, F1 and Backspace mean nothing before the start
            if commands.quit:
                return False
            if self._state.latched:
                self._drop_latches()  # the start press starts; held keys act from the first step
                return True

    def episode_over(self, frame: np.ndarray, hud: HudState, summary: list[str]) -> EndChoice:
        """Show the summary over the last frame until the player chooses: next, discard, quit."""
        self._drop_latches()
        room = self._game.width - PANEL_MARGIN  # wrapped: the narrowest window is 320 px
        choose = panel(self._fonts(), [*summary, "", "any key: next episode    Backspace: discard it    Esc: quit"], width=room)
        gone = panel(self._fonts(), ["episode discarded", "", "any key: next episode    Esc: quit"], width=room)
        discard = False
        while True:
            self._render(frame, hud, ENDED, gone if discard else choose)
            self.clock.wait()
            while (commands := self._poll()).any:
                if commands.quit:
                    return EndChoice(discard, True)
                discard = discard or commands.discard
            if self._state.latched:
                self._drop_latches()
                return EndChoice(discard, False)

    def _fonts(self) -> pygame.font.Font:
        if self._font is None:
            raise RuntimeError("GameWindow used before open()")
        return self._font

    # --- drawing ------------------------------------------------------------------------------

    def _render(self, frame: np.ndarray, hud: HudState, mark: Mark, overlay: pygame.Surface | None = None) -> None:
        assert self._screen is not None and self._bar is not None
        if frame.shape[:2] != self._frame_hw:
            log.info("frame size changed from %s to %s; resizing the window", self._frame_hw, frame.shape[:2])
            self._set_mode(frame.shape)
        self._blit_frame(frame)
        if overlay is not None:
            dim(self._screen, self._game)
            centered(self._screen, self._game, overlay)
        self._bar.draw(self._screen, self._game.height, hud, self.clock.measured_fps(), self.clock.now(), mark)
        pygame.display.flip()
        self.shown_ns = time.monotonic_ns()
        self._shown_at = self.clock.now()

    def _blit_frame(self, frame: np.ndarray) -> None:
        assert self._screen is not None and self._frame_surface is not None and self._game_view is not None
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
        else:  # pygame's scale is nearest-neighbour: every game pixel becomes a scale×scale block
            pygame.transform.scale(self._frame_surface, self._game.size, self._game_view)
