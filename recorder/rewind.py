"""Rewind: the frames already played, backwards, from state snapshots and re-simulation.

Every ``EVERY`` steps the rewinder keeps a snapshot of the emulator and the frame on screen then;
to show the frames before step ``t`` it restores the nearest snapshot at or before them and steps the
recorded actions forward (the frames come out exactly as recorded: the env is deterministic given its
state). ALE snapshots are ``ale.cloneState(include_rng=True)`` (~14 KB; restoring takes ~0.1 ms and
re-simulating one 64-step block ~12 ms on the dev box), so memory stays near
``14 KB * steps / EVERY``: ~47 MB per hour at 60 steps/s. ALE's screen is not part of its state
(after ``restoreState`` the screen still shows the last frame), hence the frame kept beside each
snapshot, zlib-compressed (~2 KB for Atari).

Backends without a cheap exact snapshot (VizDoom, retro for now, and ALE with sticky actions, the
v5 default) have a single one: ``reset(seed)`` at step 0, so each block is re-simulated from the episode's start: exact, but slower the longer the
episode.

Branching does not depend on the snapshots at all: the branch episode re-simulates the parent's
actions from ``reset(seed)`` (recorded as ``copied``), which is what makes it replayable bit-exactly.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EVERY = 64


@dataclass
class _Snapshot:
    state: Any  # the emulator's state (None: reset(seed) reaches it)
    frame: bytes  # zlib of the image leaf on screen at that step
    shape: tuple[int, ...]
    dtype: str
    state_bytes: int = 0


@dataclass
class Rewinder:
    """Keeps the current episode's actions and snapshots; ``frames_back`` re-simulates them."""

    env: Any
    image: Callable[[Any], np.ndarray]  # native observation -> the picture a person sees
    seed: int = 0
    actions: list[Any] = field(default_factory=list)
    # Back to the episode's start (the session's EpisodeStarter.restart; by default reset(seed)).
    restart: Callable[[], tuple[Any, dict[str, Any]]] | None = None
    _snapshots: dict[int, _Snapshot] = field(default_factory=dict)

    @property
    def _ale(self) -> Any:
        ale = getattr(self.env.unwrapped, "ale", None)
        # Sticky actions (v5's default 0.25) depend on emulator history that ALE 0.12's cloneState does
        # not keep: a restored state then steps differently (measured: 60 of 202 frames of
        # ALE/Breakout-v5 differed; re-applying the previous action before restoring again fixed
        # frames_back but not a restore after it). Those envs re-simulate from reset(seed): exact.
        if ale is None or float(ale.getFloat("repeat_action_probability")) > 0:
            return None
        return ale

    def _snap(self, step: int, obs: Any, exact_state: bool) -> None:
        frame = np.ascontiguousarray(self.image(obs))
        ale = self._ale
        state = ale.cloneState(include_rng=True) if exact_state and ale is not None else None
        size = len(state.serialize()) if state is not None else 0
        # Level 6: one frame every EVERY steps, so the ~1 ms it costs is nothing; it saves a third over level 1.
        self._snapshots[step] = _Snapshot(state, zlib.compress(frame.tobytes(), 6), frame.shape, frame.dtype.str, size)

    def begin(self, seed: int, obs: Any, restart: Callable[[], tuple[Any, dict[str, Any]]] | None = None) -> None:
        """A new episode that started on ``obs``; ``restart`` gets back there (default: ``reset(seed)``)."""
        self.seed = seed
        self.restart = restart
        self.actions = []
        self._snapshots = {}
        # Step 0: an ALE state where one is exact (restoring it takes 0.1 ms; reset(seed) reloads the ROM,
        # ~100 ms), else reset(seed) itself, which is exact for every backend.
        self._snap(0, obs, exact_state=True)

    def stepped(self, action: Any, obs: Any) -> None:
        """``action`` was taken and led to ``obs``."""
        self.actions.append(action)
        step = len(self.actions)
        if step % EVERY == 0 and self._ale is not None:
            self._snap(step, obs, exact_state=True)

    @property
    def memory_bytes(self) -> int:
        return sum(len(s.frame) + s.state_bytes for s in self._snapshots.values())

    def _restore(self, step: int) -> np.ndarray:
        snap = self._snapshots[step]
        if snap.state is None:
            self._start()
        else:
            self._ale.restoreState(snap.state)
        return np.frombuffer(zlib.decompress(snap.frame), dtype=np.dtype(snap.dtype)).reshape(snap.shape)

    def _start(self) -> tuple[Any, dict[str, Any]]:
        if self.restart is not None:
            return self.restart()
        obs, info = self.env.reset(seed=self.seed)
        return obs, info

    def _base(self, step: int) -> int:
        return max(s for s in self._snapshots if s <= step)

    def _step_fn(self, start: int) -> Callable[[Any], tuple[Any, ...]]:
        # From a restored emulator state, the env's own step: the wrappers' step counters (TimeLimit)
        # must not count re-simulated steps, or a resumed episode would be truncated early. After
        # reset(seed) they were reset, so there the wrapped env is right.
        return self.env.unwrapped.step if self._snapshots[start].state is not None else self.env.step

    def _simulate(self, start: int, stop: int) -> list[np.ndarray]:
        """The frames of steps ``start`` .. ``stop`` - 1 (``start`` must have a snapshot)."""
        frames = [self._restore(start)]
        step = self._step_fn(start)
        for action in self.actions[start : stop - 1]:
            obs = step(action)[0]
            frames.append(np.asarray(self.image(obs)))
        return frames

    def frames_back(self, current: int) -> Iterator[tuple[int, np.ndarray]]:
        """(step, frame) for ``current - 1`` down to 0. The env's state is undefined afterwards:
        call ``restore_to`` (or reset it) before stepping it again."""
        stop = current
        while stop > 0:
            start = self._base(stop - 1)
            frames = self._simulate(start, stop)
            for offset in range(len(frames) - 1, -1, -1):
                yield start + offset, frames[offset]
            stop = start

    def restore_to(self, step: int) -> tuple[Any, dict[str, Any]]:
        """Put the env back at ``step`` (its state after ``step`` actions); (observation, info) there."""
        if step == 0:  # an observation no env.step returns: only the episode's start gives it back
            return self._start()
        # From the snapshot strictly before ``step``: the last env.step gives the observation itself
        # (restoring an ALE state does not restore its screen).
        start = self._base(step - 1)
        self._restore(start)
        step_fn = self._step_fn(start)
        result: tuple[Any, ...] = ()
        for action in self.actions[start:step]:
            result = step_fn(action)
        return result[0], result[-1]
