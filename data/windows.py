"""Windows of K consecutive steps: which (episode, start) pairs exist, and one window's arrays.

A window holds, for each of its K positions, the observation an action was chosen on (``frames``), that
action, the reward and flags it earned, who chose it and when. Positions past an episode's end are
padding (zeros, ``valid`` False) and appear only with ``pad=True``; with ``cross_episodes=True`` a window
runs on into the next episode instead (``first`` marks where one begins, ``done`` where one ends).
With ``final_observation=True`` an episode's last position is the observation after its last action:
a frame without an action (``final`` True, ``valid`` False).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gymrec.data.episodes import NO_ACTOR, StepArrays
from gymrec.shared.errors import DatasetError

Window = dict[str, Any]  # name -> array with K rows (``action``: a dict of them for Dict action spaces)


@dataclass(frozen=True)
class WindowSpec:
    length: int = 64  # K steps
    stride: int = 1  # between the starts of consecutive windows of an episode
    pad: bool = False  # also the windows that run past an episode's end (so every step is in one)
    cross_episodes: bool = False  # windows run on into the next episode (in id order)
    # Each episode gains one more position: the observation after its last action (frames only, ``final``).
    final_observation: bool = False

    def __post_init__(self) -> None:
        if self.length < 1 or self.stride < 1:
            raise DatasetError(f"window length {self.length} and stride {self.stride} must be at least 1", "pass positive values")


def _starts(total: int, spec: WindowSpec) -> np.ndarray:
    """Starts in a run of ``total`` steps: full windows, plus with ``pad`` one more reaching the end."""
    full = np.arange(0, max(total - spec.length, -1) + 1, spec.stride, dtype=np.int64)
    if spec.pad and total > 0 and (full.size == 0 or full[-1] + spec.length < total):
        full = np.append(full, full[-1] + spec.stride if full.size else 0)
    return full


def window_index(lengths: Sequence[int], spec: WindowSpec, bad: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(episode, start) of every window, in episode order; ``bad``: per-episode step masks a window
    must not touch (steps of another actor)."""
    offsets = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
    if spec.cross_episodes:
        globals_ = _starts(int(offsets[-1]), spec)
    else:
        globals_ = np.concatenate([offsets[i] + _starts(int(n), spec) for i, n in enumerate(lengths)] or [np.zeros(0, np.int64)])
    if bad is not None and globals_.size:
        cum = np.concatenate([[0], np.cumsum(np.concatenate(list(bad)).astype(np.int64))])
        stops = np.minimum(globals_ + spec.length, offsets[-1])
        if not spec.cross_episodes:  # padding never counts; a window stops at its episode's end
            stops = np.minimum(stops, offsets[np.searchsorted(offsets, globals_, side="right")])
        globals_ = globals_[cum[stops] == cum[globals_]]
    episode = np.searchsorted(offsets, globals_, side="right") - 1
    return episode.astype(np.int64), (globals_ - offsets[episode]).astype(np.int64)


@dataclass(frozen=True)
class Piece:
    episode: int
    start: int
    count: int
    at: int  # its first position in the window


def pieces(episode: int, start: int, lengths: Sequence[int], spec: WindowSpec) -> list[Piece]:
    """The runs of steps a window is made of: one, or with ``cross_episodes`` as many as it spans."""
    out, at = [], 0
    while at < spec.length and episode < len(lengths):
        count = min(spec.length - at, lengths[episode] - start)
        if count > 0:
            out.append(Piece(episode, start, count, at))
            at += count
        if not spec.cross_episodes:
            break
        episode, start = episode + 1, 0
    return out


def _empty(like: np.ndarray, k: int, fill: Any = 0) -> np.ndarray:
    return np.full((k, *like.shape[1:]), fill, dtype=like.dtype)


def positions(lengths: Sequence[int], spec: WindowSpec) -> tuple[int, ...]:
    """Each episode's positions: its steps, and with ``final_observation`` the observation after the last."""
    return tuple(n + 1 if spec.final_observation else n for n in lengths)


def assemble(parts: list[Piece], spec: WindowSpec, read: Callable[[Piece], tuple[StepArrays, np.ndarray]],
             dict_action: bool) -> Window:
    """One window from its pieces; ``read`` gives a piece's episode steps and its frames."""
    k = spec.length
    out: Window = {}
    action: dict[str, np.ndarray] = {}
    for part in parts:
        steps, frames = read(part)
        length = len(steps.reward)
        acted = max(0, min(part.count, length - part.start))  # positions with an action (not the final observation)
        span, rows = slice(part.at, part.at + acted), slice(part.start, part.start + acted)
        if not out:
            # A window one piece fills takes its frames as read (no copy); otherwise only padding is zeroed.
            whole = part.count == k and frames.flags.writeable  # the caller may write to its window
            out = {"frames": frames if whole else np.empty((k, *frames.shape[1:]), frames.dtype), "reward": np.zeros(k), "terminated": np.zeros(k, np.bool_),
                   "truncated": np.zeros(k, np.bool_), "done": np.zeros(k, np.bool_), "valid": np.zeros(k, np.bool_),
                   "final": np.zeros(k, np.bool_), "first": np.zeros(k, np.bool_), "actor": np.full(k, NO_ACTOR, np.int8),
                   "timestamp": np.zeros(k), "shown_ns": np.zeros(k, np.int64), "decided_ns": np.zeros(k, np.int64),
                   "episode": np.full(k, -1, np.int64), "step": np.full(k, -1, np.int64)}  # fmt: skip
            action = {name: _empty(rows_, k) for name, rows_ in steps.action.items()}
        if frames.shape[1:] != out["frames"].shape[1:]:
            raise DatasetError(f"a window spans frames of shapes {out['frames'].shape[1:]} and {frames.shape[1:]}",
                               "select one config (Select(config=...)) when windows cross episodes")  # fmt: skip
        every = slice(part.at, part.at + part.count)
        if out["frames"] is not frames:
            out["frames"][every] = frames
        for name in ("reward", "terminated", "truncated", "actor", "timestamp", "shown_ns", "decided_ns"):
            out[name][span] = getattr(steps, name)[rows]
        for name, values in steps.action.items():
            action[name][span] = values[rows]
        steps_at = np.arange(part.start, part.start + part.count)
        out["step"][every] = steps_at
        out["episode"][every] = part.episode
        out["first"][every] = steps_at == 0
        out["final"][every] = steps_at == length
        out["valid"][span] = True
        out["done"][span] = steps.terminated[rows] | steps.truncated[rows] | (steps_at[:acted] == length - 1)
    filled = parts[-1].at + parts[-1].count if parts else 0
    if filled < k:
        out["frames"][filled:] = 0
    out["action"] = action if dict_action else next(iter(action.values()))
    return out
