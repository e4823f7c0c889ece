"""Recorder measurements in-process: P2 (60 Hz pacing, dummy driver), P3 (bytes/frame), P6 (RSS).

P1 is in cli_bench, P2's real-window variant in window_bench, P6's uploader half in daemon_bench.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import AgentController
from gymrec.recorder.session import Session
from gymrec.shared.envs.backends import MadeEnv, make_env
from gymrec.shared.spool.episode import Episode

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

    def wait(self, not_before: float | None = None) -> float:
        late = super().wait(not_before)
        self.samples.append(late)
        return late


def p2(ticks: int = 900, fps: float = 60.0) -> list[dict[str, Any]]:
    """The interactive loop at 60 Hz, dummy video driver, scripted keys, chunks flushing meanwhile."""
    import pygame

    from gymrec.recorder.controllers import HumanController
    from gymrec.recorder.window import GameWindow, HudState, TickInput
    from gymrec.shared.keymaps.keymap import build_resolver, load_keymap

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


class BallTracker:
    """Breakout played on: FIRE serves the ball, then the paddle follows it (read from the console's RAM).

    Every frame moves (ball, paddle, bricks breaking), unlike a policy that never serves. It still
    misses now and then, so a game lasts ~5-8k steps and a 100k-step session is a dozen games.
    """

    BALL_X, BALL_Y, PADDLE_X = 99, 101, 72  # RAM addresses; paddle x == ball x - 9 centres the paddle

    def __init__(self, made: MadeEnv, seed: int, on_step: Callable[[int], None] | None = None) -> None:
        self.ale = made.env.unwrapped.ale  # type: ignore[attr-defined]
        self.rng = np.random.default_rng(seed)
        self.on_step = on_step
        self.n = 0

    def __call__(self, _obs: Any) -> int:
        self.n += 1
        if self.on_step is not None:
            self.on_step(self.n)
        ram = self.ale.getRAM()
        if ram[self.BALL_Y] == 0:
            return 1  # FIRE: serve
        target = int(ram[self.BALL_X]) - 9 + int(self.rng.integers(-3, 4))
        paddle = int(ram[self.PADDLE_X])
        return 2 if paddle < target - 1 else 3 if paddle > target + 1 else 0  # RIGHT, LEFT, NOOP


def record_moving(spool: Path, steps: int, seed: int = 3,
                  on_step: Callable[[int], None] | None = None) -> list[Path]:
    """``steps`` steps of served, moving Breakout through the real Session and its writer process."""
    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(BREAKOUT, {})
    try:
        config = PlayConfig(env_id=BREAKOUT, spool=spool, seed=seed, agent="random", headless=True, episodes=None)
        tracker = BallTracker(made, seed, on_step)
        source = AgentController(_until(tracker, steps), "bench:ball-tracker")
        return Session(config, made, source).run().sealed
    finally:
        made.env.close()


def _until(agent: BallTracker, steps: int) -> Callable[[Any], int]:
    """The tracker, with a Ctrl-C after ``steps`` steps: the session seals the game in play and stops."""

    def act(obs: Any) -> int:
        if agent.n >= steps:
            raise KeyboardInterrupt
        return agent(obs)

    return act


def _tree_rss(proc: psutil.Process) -> dict[str, int]:
    """RSS of the recorder and of its writer process (the child that holds and compresses the chunks)."""
    children = [c for c in proc.children() if "writer_process" in " ".join(c.cmdline())]
    return {"recorder": proc.memory_info().rss, "writer": sum(c.memory_info().rss for c in children)}


def p6_recorder(spool: Path, steps: int = 100_000) -> list[dict[str, Any]]:
    """RSS growth, recorder + writer process, between step 10k and 100k of one session of moving Breakout."""
    proc = psutil.Process()
    samples: dict[int, dict[str, int]] = {}
    peak = 0

    def sample(n: int) -> None:
        nonlocal peak
        if n % 1000 == 0 or n in (10_000, steps):
            rss = _tree_rss(proc)
            peak = max(peak, sum(rss.values()))
            if n in (10_000, steps):
                samples[n] = rss

    sealed = record_moving(spool, steps, on_step=sample)
    if set(samples) != {10_000, steps} or not samples[steps]["writer"]:
        raise RuntimeError(f"P6: RSS samples missing at steps 10k/{steps} (got {sorted(samples)})")
    grew = {k: (samples[steps][k] - samples[10_000][k]) / 2**20 for k in ("recorder", "writer")}
    growth = sum(grew.values())
    frames = sum(Episode(p).length for p in sealed)
    return [{"id": "P6", "what": "recorder + writer RSS growth, step 10k -> 100k (MB)", "value": growth,
             "fmt": "{:.1f}", "target": "< 20", "ok": growth < 20,
             "note": f"recorder {grew['recorder']:+.1f}, writer {grew['writer']:+.1f}; peak sum {peak / 2**20:.0f} MB; "
                     f"{frames:,} steps of served Breakout in {len(sealed)} games"}]
