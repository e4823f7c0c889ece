"""The pairing contract, proved by a player made of pixels (tests/pixel_bot.py) in a real X window.

The bot reads gymrec-play's game area and holds a key that is a fixed function of the frame it
sees. If action t is what the player did while observation t was on screen, then on every step
where that function changes, the recorded action t is the action of the key the bot chose for
observation t. The reaction time the card defines (input-log key-down minus ``shown_ns`` of the
frame responded to) must agree with the bot's own clock (press minus seen). See docs/pairing.md.
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pygame
import pytest

from gymrec.shared.episode import Episode
from tests.conftest import BIN, REPO
from tests.pixel_bot import NO_KEY, as_rgb, frame_hash
from tests.xwindow import find_window, input_events, needs_x, start_play, stop, x, xvfb

pytestmark = needs_x

MS = 1_000_000


@dataclass(frozen=True)
class Game:
    env_id: str
    width: int  # of the frame, in pixels
    fps: float
    max_steps: int  # ~10-20 s of play
    keys: tuple[tuple[str, int], ...]  # (X keysym, pygame key code) per response; NO_KEY: none
    nudge: str  # held when nothing moves: serves the ball, starts the game
    reaction_ms: float
    scale: int = 2


ATARI_KEYS = (("Left", pygame.K_LEFT), ("Right", pygame.K_RIGHT), ("space", pygame.K_SPACE), (NO_KEY, 0))
GAMES = [
    Game("ALE/Breakout-v5", 160, 15, 220, ATARI_KEYS, "space", 20),
    Game("BreakoutNoFrameskip-v4", 160, 60, 900, ATARI_KEYS, "space", 5),
    # DefendCenter: monsters walk in all the time, so the frame never stands still.
    Game("VizdoomDefendCenter-v1", 320, 35, 500, (("Left", pygame.K_LEFT), ("Right", pygame.K_RIGHT),
                                                  ("Control_L", pygame.K_LCTRL), (NO_KEY, 0)), "Control_L", 10),
    Game("Airstriker-Genesis-v0", 320, 60, 900, (("Left", pygame.K_LEFT), ("Right", pygame.K_RIGHT),
                                                 ("z", pygame.K_z), (NO_KEY, 0)), "z", 5),
]


@pytest.fixture
def display() -> Iterator[str]:
    with xvfb() as number:
        yield number


def _run(display: str, game: Game, tmp_path: Path) -> tuple[Path, list[dict[str, Any]], dict[str, Any]]:
    """Play one episode with the bot; (the sealed episode, the bot's log, its summary)."""
    spool, bot_log = tmp_path / "spool", tmp_path / "bot.jsonl"
    play = start_play(display, [game.env_id, "--spool", str(spool), "--max-steps", str(game.max_steps),
                                "--episodes", "1", "--seed", "3", "--scale", str(game.scale)], tmp_path)
    bot = None
    try:
        window = find_window(display, play, game.width * game.scale)
        x(display, "xdotool", "windowfocus", "--sync", window)
        bot = subprocess.Popen([sys.executable, "-m", "tests.pixel_bot", "--display", display, "--window", window,
                                "--scale", str(game.scale), "--keys", ",".join(k for k, _ in game.keys),
                                "--nudge", game.nudge, "--reaction-ms", str(game.reaction_ms),
                                "--timeout", str(game.max_steps / game.fps + 60), "--out", str(bot_log)],
                               cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = play.communicate(timeout=game.max_steps / game.fps + 60)
        _, bot_err = bot.communicate(timeout=30)
    finally:
        stop(play)
        if bot is not None:
            stop(bot)
    assert play.returncode == 0, err
    assert bot.returncode == 0, bot_err
    (path,) = [Path(line) for line in out.splitlines() if line.endswith(".zarr")]
    *entries, summary = [json.loads(line) for line in bot_log.read_text().splitlines()]
    return path, entries, summary


def _hashable(action: Any) -> Any:
    if isinstance(action, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in action.items()))
    return tuple(np.asarray(action).ravel().tolist())


@dataclass
class Figures:
    steps: int
    changes: int  # steps where the bot's response changes, with its response to obs t found
    counted: int  # ... and its press in time
    paired: int  # ... and recorded action t == the action of its response to obs t
    off_by_one: int  # ... recorded action t == the action of its response to obs t-1
    presses: int
    in_time: int
    decided_minus_shown_ms: float
    latency_diffs_ms: list[float]

    def line(self, env_id: str) -> str:
        diffs = np.abs(self.latency_diffs_ms) if self.latency_diffs_ms else np.array([np.nan])
        return (f"{env_id}: {self.steps} steps, pairing {self.paired}/{self.counted} = "
                f"{100 * self.paired / max(1, self.counted):.1f} % (t-1: {100 * self.off_by_one / max(1, self.counted):.1f} %), "
                f"bot in time {self.in_time}/{self.presses}, median decided-shown {self.decided_minus_shown_ms:.1f} ms, "
                f"latency |card - bot| median {np.median(diffs):.2f} ms p90 {np.percentile(diffs, 90):.2f} ms "
                f"({len(self.latency_diffs_ms)} presses)")


def _figures(episode: Episode, game: Game, entries: list[dict[str, Any]]) -> Figures:
    times = episode.batch(0, episode.length, with_obs=False).times
    shown, decided = np.asarray(times["shown_ns"], np.int64), np.asarray(times["decided_ns"], np.int64)
    frames = episode.obs(episode.attrs.image_key, 0, episode.length)
    hashes = [frame_hash(as_rgb(frame)) for frame in frames]
    choice = [h % len(game.keys) for h in hashes]
    actions = [_hashable(a) for a in episode.actions()]
    responses = [e for e in entries if not e.get("nudge")]
    nudges = [e["seen_ns"] for e in entries if e.get("nudge")]

    def seen(t: int) -> dict[str, Any] | None:
        """The bot's entry for observation t: same pixels, seen while it was the frame on screen."""
        stop = shown[t + 1] if t + 1 < len(shown) else shown[t] + 10**9
        return next((e for e in responses if e["hash"] == hashes[t] and shown[t] - 5 * MS <= e["seen_ns"] < stop), None)

    def calm(t: int) -> bool:
        return not any(shown[t - 1] - 5 * MS <= n < (shown[t + 1] if t + 1 < len(shown) else n + 1) for n in nudges)

    # Which recorded action each key gives: steps where the same key was held from frame t-1 through
    # frame t, so action t is that key's action whichever frame it is paired with.
    by_key: dict[int, Counter[Any]] = {}
    for t in range(1, episode.length):
        entry = seen(t - 1)
        if choice[t] == choice[t - 1] and entry is not None and entry["in_time"] is not False and calm(t):
            by_key.setdefault(choice[t], Counter())[actions[t]] += 1
    action_of = {c: counts.most_common(1)[0][0] for c, counts in by_key.items()}
    assert len(set(action_of.values())) == len(action_of) >= len(game.keys) - 1, f"keys do not act distinctly: {by_key}"

    events = [(t, code) for t, kind, code in input_events(episode) if kind == "key_down"]
    codes = dict(game.keys)
    changes = counted = paired = off_by_one = 0
    diffs: list[float] = []
    for t in range(1, episode.length):
        entry = seen(t)
        if choice[t] == choice[t - 1] or entry is None or choice[t] not in action_of or not calm(t):
            continue
        changes += 1
        if entry["in_time"] is False:
            continue
        counted += 1
        paired += actions[t] == action_of[choice[t]]
        off_by_one += actions[t] == action_of.get(choice[t - 1])
        if entry["press_ns"] is not None and entry["key"] != NO_KEY:
            near = [e for e, code in events if code == codes[entry["key"]] and entry["seen_ns"] <= e <= entry["press_ns"] + 50 * MS]
            if near:
                card = min(near, key=lambda e: abs(e - entry["press_ns"])) - shown[t]
                diffs.append((card - (entry["press_ns"] - entry["seen_ns"])) / MS)
    presses = [e for e in responses if e["press_ns"] is not None]
    return Figures(episode.length, changes, counted, paired, off_by_one, len(presses),
                   sum(1 for e in presses if e["in_time"]), float(np.median(decided - shown)) / MS, diffs)


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES, ids=[g.env_id for g in GAMES])
def test_action_t_is_the_players_response_to_observation_t(display: str, game: Game, tmp_path: Path) -> None:
    path, entries, summary = _run(display, game, tmp_path)
    episode = Episode(path)
    figures = _figures(episode, game, entries)
    print(f"\n{figures.line(game.env_id)}; bot polls {summary['mean_poll_ms']:.2f} ms")

    assert figures.counted >= 30, f"too few steps where the response changed in time: {figures}"
    assert figures.paired >= 0.99 * figures.counted, figures.line(game.env_id)
    assert len(figures.latency_diffs_ms) >= 20, figures
    assert np.median(np.abs(figures.latency_diffs_ms)) <= 5, figures.line(game.env_id)

    replay = subprocess.run([str(BIN / "gymrec-replay"), str(path)], cwd=tmp_path,
                            env={**os.environ, "SDL_VIDEODRIVER": "dummy"},
                            capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr
