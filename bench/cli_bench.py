"""P1, P5 and P11 through the command line, as users run them: fresh processes, start-up, env
creation and resets all included, and every ratio taken within one run.

The baseline is what a user compares against: a plain gymnasium loop over the same env, random
actions, ``reset()`` between episodes (unseeded: reseeding an ALE env reloads its ROM, ~100 ms).
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ENV_ID = "BreakoutNoFrameskip-v4"
EPISODES = 40
BIN = Path(sys.executable).parent
_STEPS = re.compile(r"(\d+) steps recorded")

PLAIN_LOOP = """
import sys, gymnasium as gym, ale_py
ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
gym.register_envs(ale_py)
env = gym.make(sys.argv[1], render_mode="rgb_array")
env.action_space.seed(1)
env.reset(seed=1)
steps = 0
for episode in range(int(sys.argv[2])):
    if episode:
        env.reset()
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        done = terminated or truncated
print(steps)
"""


def _timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=1800)
    elapsed = time.perf_counter() - start
    if out.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.stderr.strip()[-500:]}")
    return elapsed, out


def plain_loop(cwd: Path, episodes: int = EPISODES) -> float:
    elapsed, out = _timed([sys.executable, "-c", PLAIN_LOOP, ENV_ID, str(episodes)], cwd)
    return int(out.stdout.split()[-1]) / elapsed


def record(spool: Path, cwd: Path, workers: int | None = None, episodes: int = EPISODES) -> tuple[float, int]:
    """(steps/s, steps) of ``gymrec-play ... --agent random --headless`` in a fresh process."""
    cmd = [str(BIN / "gymrec-play"), ENV_ID, "--agent", "random", "--headless", "--episodes", str(episodes),
           "--seed", "1", "--spool", str(spool)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    elapsed, out = _timed(cmd, cwd)
    match = _STEPS.search(out.stderr)
    if match is None:
        raise RuntimeError(f"gymrec-play printed no step count: {out.stderr.strip()[-300:]}")
    steps = int(match.group(1))
    return steps / elapsed, steps


def replay(spool: Path, cwd: Path, steps: int) -> float:
    elapsed, out = _timed([str(BIN / "gymrec-replay"), "--all", "--spool", str(spool)], cwd)
    if out.returncode != 0:
        raise RuntimeError(f"the bench episodes do not replay identically:\n{out.stdout[-800:]}")
    return steps / elapsed


def _row(id_: str, what: str, value: float, target: float, note: str) -> dict[str, Any]:
    return {"id": id_, "what": what, "value": value, "fmt": "{:.2f}", "target": f">= {target}",
            "ok": value >= target, "note": note}


def p1_p5() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = plain_loop(root)
        rec, steps = record(root / "spool", root)
        rep = replay(root / "spool", root, steps)
    return [
        _row("P1", f"gymrec-play --agent random --headless / plain loop ({EPISODES} ep)", rec / raw, 0.9,
             f"{rec:,.0f} vs {raw:,.0f} steps/s, {steps:,} steps, CLI, fresh processes"),
        _row("P5", "gymrec-replay --all / plain loop (same 40 episodes)", rep / raw, 0.9,
             f"{rep:,.0f} vs {raw:,.0f} steps/s"),
    ]


def p11() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one, steps_one = record(root / "one", root, workers=1)
        two, steps_two = record(root / "two", root, workers=2)
    return [_row("P11", "gymrec-play --workers 2 / --workers 1, aggregate steps/s", two / one, 1.5,
                 f"{two:,.0f} vs {one:,.0f} steps/s ({steps_two:,} / {steps_one:,} steps, {EPISODES} ep)")]
