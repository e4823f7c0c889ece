"""``--render``: show the recording at its fps and, while verifying, the live replay next to it.

Space pauses, the right arrow steps while paused (the left arrow steps back with ``--no-verify``,
where no live env has to follow), Esc or closing the window stops: that is ``ReplayStoppedError``
(exit 4), never "identical", since the rest was not verified. The panes are labelled "recorded" and
"replayed"; the status line below them shows the step and the verdict so far. The window is scaled
by the largest integer factor that fits the screen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pygame

from gymrec.replay.verify import Checker, Divergence, Result, VerifyOptions, version_warnings
from gymrec.shared.envs.backends import make_env_for
from gymrec.shared.errors import DisplayError, ReplayStoppedError
from gymrec.shared.spool.sources import EpisodeSource

log = logging.getLogger(__name__)
GAP = 8
TEXT_H = 20  # the label row above the panes and the status row below them
SCREEN_MARGIN = 64  # window decorations and panels: a window exactly the screen's size does not fit
LABELS = ("recorded", "replayed")
WHITE = (255, 255, 255)


@dataclass
class Controls:
    paused: bool = False
    quit: bool = False
    step: int = 0  # +1 / -1 requested while paused

    def poll(self) -> None:
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_ESCAPE):
                self.quit = True
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_SPACE:
                self.paused = not self.paused
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_RIGHT:
                self.step = 1
            elif event.type == pygame.KEYDOWN and event.key == pygame.K_LEFT:
                self.step = -1


def _surface(frame: np.ndarray) -> pygame.Surface:
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[:, :, 0]
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    return pygame.surfarray.make_surface(np.ascontiguousarray(frame[:, :, :3].swapaxes(0, 1)))


class Viewer:
    """The panes ("recorded", and "replayed" while verifying) side by side, labelled, with a status line."""

    def __init__(self, shape: tuple[int, ...], panels: int, title: str) -> None:
        try:
            # display and font only: pygame.init() would open the sound device (8 lines of ALSA noise).
            pygame.display.init()
            pygame.font.init()
        except pygame.error as e:
            raise DisplayError(f"cannot open a window: {e}", "run with a display, or without --render") from e
        self.height, self.width = int(shape[0]), int(shape[1])
        self.panels = panels
        self.font = pygame.font.Font(None, 20)
        self.scale = fit_scale(self.width, self.height, panels, _desktop())
        size = (panels * self.width * self.scale + (panels - 1) * GAP, self.height * self.scale + 2 * TEXT_H)
        try:
            self.screen = pygame.display.set_mode(size)
        except pygame.error as e:
            raise DisplayError(f"cannot open a window: {e}", "run with a display, or without --render") from e
        pygame.display.set_caption(title)
        self._labels = [self.font.render(text, True, WHITE) for text in LABELS[:panels]]

    def draw(self, frames: list[np.ndarray], status: str) -> None:
        self.screen.fill((0, 0, 0))
        pane_w = self.width * self.scale
        for i, frame in enumerate(frames):
            x = i * (pane_w + GAP)
            self.screen.blit(self._labels[i], (x + 4, (TEXT_H - self._labels[i].get_height()) // 2))
            surface = pygame.transform.scale(_surface(frame), (pane_w, self.height * self.scale))
            self.screen.blit(surface, (x, TEXT_H))
        line = self.font.render(status, True, WHITE)
        self.screen.blit(line, (4, TEXT_H + self.height * self.scale + (TEXT_H - line.get_height()) // 2))
        pygame.display.flip()

    def close(self) -> None:
        pygame.font.quit()
        pygame.display.quit()


def _desktop() -> tuple[int, int]:
    sizes = pygame.display.get_desktop_sizes()
    return (int(sizes[0][0]), int(sizes[0][1])) if sizes else (1280, 720)


def fit_scale(width: int, height: int, panels: int, desktop: tuple[int, int]) -> int:
    """The largest integer scale (at most what makes the game ~480 px tall) at which the window fits
    the screen, less room for the window manager's frame; at least 1."""
    room_w, room_h = desktop[0] - SCREEN_MARGIN, desktop[1] - SCREEN_MARGIN - 2 * TEXT_H
    scale = max(1, 480 // max(height, 1))
    while scale > 1 and (panels * width * scale + (panels - 1) * GAP > room_w or height * scale > room_h):
        scale -= 1
    return scale


def _status(t: int, length: int, verify: bool, divergence: Divergence | None, paused: bool) -> str:
    if divergence is not None:
        verdict = f"diverged: {divergence.line()}"
    elif not verify:
        verdict = "shown, not verified (--no-verify)"
    else:
        verdict = "identical" if t == length else "identical so far"
    keys = "Space: pause  Right: step" + ("  Left: back" if not verify else "") + "  Esc: stop"
    return f"step {t}/{length}   {verdict}{'   PAUSED' if paused else ''}   {keys}"


def show(
    source: EpisodeSource,
    options: VerifyOptions,
    fps: float | None,
    verify: bool,
    warn: Callable[[str], None] = log.warning,
) -> Result:
    """Play the recording (and verify it live unless ``verify`` is False); returns what was seen."""
    started = time.perf_counter()
    warnings = version_warnings(source.attrs) if verify else []
    for line in warnings:
        warn(f"{source.id[:8]}: {line}")
    image_key = source.attrs.image_key
    steps = source.steps() if verify else None
    made = make_env_for(source.attrs) if verify else None
    checker = Checker(source, steps, options) if steps is not None else None
    live = None
    if made is not None:
        live = made.starter.restart(source.attrs.seed, source.attrs.start_state).obs
    shape = next(leaf.shape for leaf in source.obs_leaves if leaf.name == image_key)
    viewer = Viewer(shape, 2 if verify else 1, f"gymrec-replay {source.id[:8]} {source.env_id}")
    period = 1.0 / float(fps or source.attrs.fps or 60.0)
    controls = Controls()
    divergence: Divergence | None = None
    t = 0
    try:
        while t <= source.length and not controls.quit and divergence is None:
            tick = time.perf_counter()
            recorded = source.observation(t)
            frames = [recorded[image_key]]
            if made is not None and checker is not None and steps is not None:
                divergence = checker.obs(t, live)
                leaves = live if isinstance(live, dict) else {image_key: live}
                frames.append(np.asarray(leaves[image_key]))
            viewer.draw(frames, _status(t, source.length, verify, divergence, controls.paused))
            if divergence is not None or t == source.length:
                break
            controls.poll()
            while controls.paused and not controls.quit and controls.step == 0:
                time.sleep(0.01)
                controls.poll()
            back = controls.step < 0 and made is None
            controls.step = 0
            if controls.quit:
                break
            if made is not None and checker is not None and steps is not None:
                live, reward, terminated, truncated, _ = made.env.step(steps.actions[t])
                divergence = checker.outcome(t, reward, terminated, truncated)
            t = max(0, t - 1) if back else t + 1
            time.sleep(max(0.0, period - (time.perf_counter() - tick)))
    finally:
        viewer.close()
        if made is not None:
            made.env.close()
    if divergence is not None and divergence.step == source.length and divergence.field.startswith("observation"):
        divergence = Divergence(divergence.step, f"final {divergence.field}", divergence.detail, divergence.differing,
                                divergence.max_abs, divergence.diff_png)  # fmt: skip
    if controls.quit and t < source.length and divergence is None:
        raise ReplayStoppedError(f"{source.id[:8]}: stopped at step {t} of {source.length} (Esc)",
                                 "the rest was not shown or verified; run again to see it all")
    if not verify:
        status = "shown"
    elif divergence is not None:
        status = "diverged"
    else:
        status = "identical" if t >= source.length and not controls.quit else "stopped"
    return Result(source.id, source.env_id, source.length, status, time.perf_counter() - started, divergence,
                  tuple(warnings), steps_run=t)  # fmt: skip
