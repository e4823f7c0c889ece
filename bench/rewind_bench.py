"""RW: rewinding 60 s of play, and snapshot memory per hour, per backend.

Measured on the Rewinder alone: the time to put the env back in its exact state 60 s earlier (the
target: 0.5 s for Atari), the time to bring back every frame of those 60 s one by one (what holding
R costs beyond the display, spread over the rewind), and the snapshot memory scaled to an hour.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

from gymrec.recorder.rewind import Rewinder
from gymrec.shared.envs.backends import make_env
from gymrec.shared.spool.spaces import split_observation

Row = dict[str, Any]
# (env id, where the image is) -- retro is left out: one emulator a process, and the bench shares it.
CASES = (("BreakoutNoFrameskip-v4", "frame"), ("ALE/Breakout-v5", "frame"), ("VizdoomHealthGathering-v1", "screen"))


def _one(env_id: str, key: str) -> Row:
    made = make_env(env_id, {})
    env = made.env
    try:
        steps = int(60 * made.native_fps)
        rewinder = Rewinder(env, lambda obs: split_observation(obs)[key])
        obs, _ = env.reset(seed=1)
        rewinder.begin(1, obs)
        env.action_space.seed(1)
        for _ in range(steps):
            # ALE: NOOP keeps Breakout's ball unlaunched, so the episode lasts the whole 60 s.
            action = 0 if made.backend == "ale" else env.action_space.sample()
            obs, _, terminated, truncated, _ = env.step(action)
            rewinder.stepped(action, obs)
            if terminated or truncated:
                break
        played = len(rewinder.actions)
        start = time.perf_counter()
        rewinder.restore_to(1)  # back to the start: the exact state 60 s ago
        jump = time.perf_counter() - start
        start = time.perf_counter()
        count = sum(1 for _ in rewinder.frames_back(played))
        every_frame = time.perf_counter() - start
        snapshots = len(rewinder._snapshots)  # noqa: SLF001
        # Snapshot memory grows with play only where there are state snapshots (one every EVERY steps).
        scale = 3600 * made.native_fps / max(played, 1) if snapshots > 1 else 1.0
        per_hour = rewinder.memory_bytes * scale / 2**20
    finally:
        env.close()
    return {"id": "RW", "what": f"rewind {played / made.native_fps:.0f} s of play: {env_id}", "value": jump,
            "fmt": "{:.3f} s", "target": "<= 0.5 s", "ok": jump <= 0.5 and per_hour <= 50,
            "note": f"to the start; every frame back: {every_frame:.2f} s ({count} frames); "
                    f"snapshots {per_hour:.1f} MB/hour (<= 50)"}


def rows() -> list[Row]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # VizDoom writes _vizdoom.ini into the CWD
        try:
            out = [_one(env_id, key) for env_id, key in CASES]
        finally:
            os.chdir(cwd)
    return out
