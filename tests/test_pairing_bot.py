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

from gymrec.shared.spool.episode import Episode
from tests.conftest import BIN, REPO
from tests.xwindow import find_window, input_events, needs, start_play, stop, x, xvfb

pytest.importorskip("Xlib", reason="the pixel bot needs python-xlib (pip install -e '.[dev]')")
from tests.pixel_bot import NO_KEY, as_rgb, frame_hash  # noqa: E402  (imports Xlib)

pytestmark = needs("Xvfb", "xdotool")

MS = 1_000_000


@dataclass(frozen=True)
class Game:
    env_id: str
    width: int  # of the frame, in pixels
    fps: float
    max_steps: int  # ~5-6 s of play: ~60-150 changed responses, twice the 30 the test needs
    keys: tuple[tuple[str, int], ...]  # (X keysym, pygame key code) per response; NO_KEY: none
    nudge: str  # held when nothing moves: serves the ball, starts the game
    reaction_ms: float  # plus 0-4 ms by the frame's hash (tests/pixel_bot.py)
    scale: int = 2


ATARI_KEYS = (("Left", pygame.K_LEFT), ("Right", pygame.K_RIGHT), ("space", pygame.K_SPACE), (NO_KEY, 0))
DOOM_KEYS = (("Left", pygame.K_LEFT), ("Right", pygame.K_RIGHT), ("Control_L", pygame.K_LCTRL), (NO_KEY, 0))
GENESIS_KEYS = (("Left", pygame.K_LEFT), ("Right", pygame.K_RIGHT), ("z", pygame.K_z), (NO_KEY, 0))
GAMES = [
    Game("ALE/Breakout-v5", 160, 15, 90, ATARI_KEYS, "space", 20),
    Game("BreakoutNoFrameskip-v4", 160, 60, 300, ATARI_KEYS, "space", 5),
    # DefendCenter: monsters walk in all the time, so the frame never stands still.
    Game("VizdoomDefendCenter-v1", 320, 35, 175, DOOM_KEYS, "Control_L", 10, scale=1),
    Game("Airstriker-Genesis-v0", 320, 60, 300, GENESIS_KEYS, "z", 5, scale=1),
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
                                "--nudge", game.nudge, "--reaction-ms", str(game.reaction_ms), "--jitter-ms", "4",
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


def _pct(part: int, whole: int) -> str:
    return f"{part}/{whole} = {100 * part / max(1, whole):.1f} %"


@dataclass
class Figures:
    steps: int
    period_ms: float
    decided_minus_shown_ms: float  # median
    short_frames: int  # steps whose frame period ended less than half a period after the frame went up
    changes: int  # steps where the bot's response changes and its response to obs t is in the log
    counted: int  # ... and its press reached the recorder in step t's input window, alone
    paired: int  # ... and recorded action t == the action of its response to obs t
    off_by_one: int  # ... == the action of its response to obs t-1
    seen_in_time: int  # changes where the frame was still up right after the press (the bot's view alone)
    seen_paired: int  # ... and paired
    seen_off_by_one: int  # ... and paired with obs t-1 instead
    presses: int
    in_time: int  # presses after which the frame was still the same
    latency_diffs_ms: list[float]  # card's reaction time minus the bot's, per counted press

    def line(self, env_id: str) -> str:
        diffs = np.abs(self.latency_diffs_ms) if self.latency_diffs_ms else np.array([np.nan])
        return (f"{env_id}: {self.steps} steps; pairing {_pct(self.paired, self.counted)} (t-1: "
                f"{_pct(self.off_by_one, self.counted)}; bot's view alone: {_pct(self.seen_paired, self.seen_in_time)}, "
                f"t-1: {_pct(self.seen_off_by_one, self.seen_in_time)}); "
                f"median decided-shown {self.decided_minus_shown_ms:.1f} ms of a {self.period_ms:.1f} ms period "
                f"(short: {_pct(self.short_frames, self.steps)}); bot in time {_pct(self.in_time, self.presses)}; "
                f"latency |card - bot| median {np.median(diffs):.2f} ms p90 {np.percentile(diffs, 90):.2f} ms "
                f"over {len(self.latency_diffs_ms)} presses")


def _figures(episode: Episode, game: Game, entries: list[dict[str, Any]]) -> Figures:
    times = episode.batch(0, episode.length, with_obs=False).times
    shown, decided = np.asarray(times["shown_ns"], np.int64), np.asarray(times["decided_ns"], np.int64)
    hashes = [frame_hash(as_rgb(frame)) for frame in episode.obs(episode.attrs.image_key, 0, episode.length)]
    choice = [game.keys[h % len(game.keys)][0] for h in hashes]  # the bot's response to each observation
    actions = [_hashable(a) for a in episode.actions()]
    responses = [e for e in entries if not e.get("nudge")]
    presses = sorted((e["press_ns"], e["key"]) for e in entries if e["press_ns"] is not None)  # nudges too
    press_times = np.array([p for p, _ in presses], np.int64)

    def window(t: int) -> tuple[int, int]:
        """Step t's input window: after the recorder took action t-1, until it took action t."""
        return (decided[t - 1] if t else shown[0]) - 2 * MS, decided[t]

    def presses_in(t: int) -> np.ndarray:
        start, end = window(t)
        return press_times[(press_times >= start) & (press_times <= end)]

    # Which action each key gives, from the steps whose window holds no press of the bot: the key
    # held throughout is action t's, whichever frame the recorder pairs it with.
    by_key: dict[str, Counter[Any]] = {}
    for t in range(1, episode.length):
        before = np.searchsorted(press_times, window(t)[0]) - 1
        if before >= 0 and not len(presses_in(t)):
            by_key.setdefault(presses[before][1], Counter())[actions[t]] += 1
    action_of = {key: counts.most_common(1)[0][0] for key, counts in by_key.items()}
    assert len(set(action_of.values())) == len(action_of) >= len(game.keys) - 1, f"keys do not act distinctly: {by_key}"

    def seen(t: int) -> dict[str, Any] | None:
        """The bot's entry for observation t: the same pixels, seen while that frame was up."""
        end = shown[t + 1] if t + 1 < len(shown) else shown[t] + 10**9
        return next((e for e in responses if e["hash"] == hashes[t] and shown[t] - 5 * MS <= e["seen_ns"] < end), None)

    events = [(t, code) for t, kind, code in input_events(episode) if kind == "key_down"]
    codes = dict(game.keys)
    changes = counted = paired = off_by_one = seen_in_time = seen_paired = seen_off_by_one = 0
    diffs: list[float] = []
    for t in range(1, episode.length):
        entry = seen(t)
        if choice[t] == choice[t - 1] or entry is None or choice[t] not in action_of:
            continue
        changes += 1
        hit, late = actions[t] == action_of[choice[t]], actions[t] == action_of.get(choice[t - 1])
        if entry["in_time"] is not False:
            seen_in_time += 1
            seen_paired += hit
            seen_off_by_one += late
        # Counted: the press for obs t (if the key changed) reached the X server while obs t was up and
        # at least 1 ms before the recorder took action t, and no other press of the bot fell in step
        # t's window (a late press for obs t-1 is latched into step t, as a quick tap must be).
        own = [] if entry["press_ns"] is None else [entry["press_ns"]]
        if presses_in(t).tolist() != own or entry["in_time"] is False or (own and own[0] > decided[t] - MS):
            continue
        counted += 1
        paired += hit
        off_by_one += late
        if own and entry["key"] != NO_KEY:
            near = [e for e, code in events if code == codes[entry["key"]] and entry["seen_ns"] <= e <= decided[t]]
            if near:
                card = min(near, key=lambda e: abs(e - own[0])) - shown[t]
                diffs.append((card - (own[0] - entry["seen_ns"])) / MS)
    pressed = [e for e in responses if e["press_ns"] is not None]
    period = 1000 / game.fps
    lag = (decided - shown) / MS
    return Figures(episode.length, period, float(np.median(lag)), int((lag < period / 2).sum()), changes, counted,
                   paired, off_by_one, seen_in_time, seen_paired, seen_off_by_one, len(pressed), sum(1 for e in pressed if e["in_time"]),
                   diffs)


@pytest.mark.slow
@pytest.mark.parametrize("game", GAMES, ids=[g.env_id for g in GAMES])
def test_action_t_is_the_players_response_to_observation_t(display: str, game: Game, tmp_path: Path) -> None:
    path, entries, summary = _run(display, game, tmp_path)
    episode = Episode(path)
    figures = _figures(episode, game, entries)
    report = f"{figures.line(game.env_id)}; bot polls take {summary['mean_poll_ms']:.2f} ms"
    print(f"\n{report}")

    # The frame stays up for its period while input gathers: action t is decided about a period after.
    assert figures.decided_minus_shown_ms > figures.period_ms / 2, report
    assert figures.counted >= 30, f"too few steps where the response changed and reached the recorder in time: {report}"
    assert figures.paired >= 0.99 * figures.counted, report
    assert len(figures.latency_diffs_ms) >= 20, report
    assert np.median(np.abs(figures.latency_diffs_ms)) <= 5, report

    replay = subprocess.run([str(BIN / "gymrec-replay"), str(path)], cwd=tmp_path,
                            env={**os.environ, "SDL_VIDEODRIVER": "dummy"}, capture_output=True, text=True, timeout=300)
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr
