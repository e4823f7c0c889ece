"""``--render``: show the recording at its fps and, while verifying, the live replay next to it.

Space pauses, the right arrow steps while paused (the left arrow steps back with ``--no-verify``,
where no live env has to follow), Esc or closing the window quits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pygame

from gymrec.replay.sources import EpisodeSource
from gymrec.replay.verify import Checker, Divergence, Result, VerifyOptions, make_recorded_env, version_warnings
from gymrec.shared.errors import DisplayError

log = logging.getLogger(__name__)
GAP = 8


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
    def __init__(self, shape: tuple[int, ...], panels: int, title: str) -> None:
        pygame.init()
        self.height, self.width = int(shape[0]), int(shape[1])
        self.scale = max(1, 480 // max(self.height, 1))
        size = (panels * self.width * self.scale + (panels - 1) * GAP, self.height * self.scale)
        try:
            self.screen = pygame.display.set_mode(size)
        except pygame.error as e:
            raise DisplayError(f"cannot open a window: {e}", "run with a display, or without --render") from e
        pygame.display.set_caption(title)

    def draw(self, frames: list[np.ndarray]) -> None:
        self.screen.fill((0, 0, 0))
        for i, frame in enumerate(frames):
            surface = pygame.transform.scale(_surface(frame), (self.width * self.scale, self.height * self.scale))
            self.screen.blit(surface, (i * (self.width * self.scale + GAP), 0))
        pygame.display.flip()

    def close(self) -> None:
        pygame.display.quit()


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
    image_key = str(source.attrs["image_key"])
    steps = source.steps() if verify else None
    made = make_recorded_env(source.attrs) if verify else None
    checker = Checker(source, steps, options) if steps is not None else None
    live = None
    if made is not None:
        live = made.starter.restart(source.attrs).obs
    shape = next(leaf.shape for leaf in source.obs_leaves if leaf.name == image_key)
    viewer = Viewer(shape, 2 if verify else 1, f"gymrec-replay {source.id[:8]} {source.env_id}")
    period = 1.0 / float(fps or source.attrs.get("fps") or 60.0)
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
            viewer.draw(frames)
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
    if not verify:
        status = "shown"
    elif divergence is not None:
        status = "diverged"
    else:
        status = "identical" if t >= source.length and not controls.quit else "stopped"
    return Result(source.id, source.env_id, source.length, status, time.perf_counter() - started, divergence,
                  tuple(warnings), steps_run=t)  # fmt: skip
