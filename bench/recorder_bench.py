"""Recorder measurements in-process: P2 (60 Hz pacing), P3 (bytes/frame), P6 (RSS). P1 is in cli_bench."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.session import Session
from gymrec.shared.backends import make_env
from gymrec.shared.episode import Episode

BREAKOUT = "BreakoutNoFrameskip-v4"


def p3(episodes: int = 80) -> list[dict[str, Any]]:
    """Spool bytes per frame of a headless random agent on Breakout through the real Session."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp)
        made = make_env(BREAKOUT, {})
        config = PlayConfig(env_id=BREAKOUT, spool=spool, seed=1, agent="random", headless=True, episodes=episodes)
        sealed = Session(config, made).run().sealed
        made.env.close()
        frames = sum(Episode(p).length + 1 for p in sealed)
        size = sum(f.stat().st_size for f in spool.rglob("*") if f.is_file())
    return [{"id": "P3", "what": "spool bytes per frame (Breakout)", "value": size / frames, "fmt": "{:.0f}",
             "target": "<= 160", "ok": size / frames <= 160,
             "note": f"{size / 1e6:.1f} MB for {frames:,} frames in {len(sealed)} episodes, all files"}]


class _LatenessClock(FixedRateClock):
    def __init__(self, fps: float) -> None:
        super().__init__(fps)
        self.samples: list[float] = []

    def wait(self) -> float:
        late = super().wait()
        self.samples.append(late)
        return late


def p2(ticks: int = 900, fps: float = 60.0) -> list[dict[str, Any]]:
    """The interactive loop at 60 Hz, dummy video driver, scripted keys, chunks flushing meanwhile."""
    import pygame

    from gymrec.recorder.controllers import HumanController
    from gymrec.recorder.window import GameWindow, HudState, TickInput
    from gymrec.shared.keymap import build_resolver, load_keymap

    class Scripted(GameWindow):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n = 0

        def wait_for_start(self, frame: np.ndarray, hud: HudState, notice: str = "") -> bool:
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_n, mod=0, unicode="", scancode=0))
            return super().wait_for_start(frame, hud, notice)

        def next_tick(self, frame: np.ndarray, hud: HudState, wait_for_input: bool = False) -> TickInput:
            keys = (pygame.K_LEFT, pygame.K_RIGHT, pygame.K_SPACE)
            if self.n % 7 == 0:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=keys[self.n % 3], mod=0, unicode="", scancode=0))
            if self.n % 7 == 3:
                pygame.event.post(pygame.event.Event(pygame.KEYUP, key=keys[(self.n - 3) % 3], mod=0, unicode="", scancode=0))
            if self.n == ticks:
                pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE, mod=0, unicode="", scancode=0))
            self.n += 1
            return super().next_tick(frame, hud, wait_for_input)

    env_id = "PongNoFrameskip-v4"
    with tempfile.TemporaryDirectory() as tmp:
        made = make_env(env_id, {})
        clock = _LatenessClock(fps)
        keymap = load_keymap(made.backend)
        resolver = build_resolver(keymap, made.env)
        window = Scripted(title="bench", fps=fps, scale=3, help_lines=[], clock=clock)
        window.open((210, 160, 3))
        config = PlayConfig(env_id=env_id, spool=Path(tmp), seed=2, fps=fps, episodes=1000)
        result = Session(config, made, HumanController(window, resolver, None)).run()
        window.close()
        made.env.close()
    late = np.array(clock.samples[5:]) * 1e3  # the first ticks include window start-up
    p99 = float(np.percentile(late, 99))
    missed = int(np.sum(late > 1e3 / fps))
    return [
        {"id": "P2", "what": "60 Hz loop: p99 frame-interval error (ms)", "value": p99, "fmt": "{:.2f}",
         "target": "< 2", "ok": p99 < 2, "note": f"{len(late)} ticks, {result.steps} steps, max {late.max():.2f} ms"},
        {"id": "P2", "what": "60 Hz loop: steps missed while chunks flush", "value": missed, "fmt": "{:d}",
         "target": "0", "ok": missed == 0, "note": f"{result.steps // 64} chunk flushes during the run"},
    ]


def p6_recorder(steps: int = 100_000) -> list[dict[str, Any]]:
    """RSS growth between step 10k and 100k of one long Breakout episode (FIRE never pressed)."""
    proc = psutil.Process()
    samples: dict[int, int] = {}

    class NoFire:
        def __init__(self) -> None:
            self.n = 0
            self.rng = np.random.default_rng(0)

        def __call__(self, _obs: Any) -> int:
            self.n += 1
            if self.n in (10_000, steps):
                samples[self.n] = proc.memory_info().rss
            return int(self.rng.choice([0, 2, 3]))  # the ball is never served: the episode never ends

    with tempfile.TemporaryDirectory() as tmp:
        made = make_env(BREAKOUT, {})
        config = PlayConfig(env_id=BREAKOUT, spool=Path(tmp), seed=3, agent="random", headless=True, episodes=1,
                            max_steps=steps)
        session = Session(config, made)
        session.agent = NoFire()
        result = session.run()
        made.env.close()
    growth = (samples.get(steps, 0) - samples.get(10_000, 0)) / 2**20
    return [{"id": "P6", "what": "recorder RSS growth, step 10k -> 100k (MB)", "value": growth, "fmt": "{:.1f}",
             "target": "< 20", "ok": growth < 20, "note": f"{result.steps:,} steps in one episode"}]
