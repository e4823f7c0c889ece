"""P1, P5 and P11 through the command line, as users run them: fresh processes, start-up, env
creation and resets all included, and every ratio taken within one run.

The baseline is what a user compares against: a plain gymnasium loop over the same env, random
actions, ``reset()`` between episodes (unseeded: reseeding an ALE env reloads its ROM, ~100 ms).
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV_ID = "BreakoutNoFrameskip-v4"
EPISODES = 40
BIN = Path(sys.executable).parent
_STEPS = re.compile(r"(\d+) steps recorded")
_IDENTICAL = re.compile(r"\s\d+\s+identical\b")  # a result row: "<id>  <env>  <steps>  identical ..."

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


@dataclass(frozen=True)
class Run:
    """One command's steps, wall seconds and CPU seconds (itself and all its children: writer
    processes, workers), a second view that other users' load on the 2 cores distorts less."""

    steps: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.steps / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.steps / self.cpu


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    start, cpu = time.perf_counter(), _cpu()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=1800, env=env)
    elapsed, used = time.perf_counter() - start, _cpu() - cpu
    if out.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(cmd[:3])} failed: {out.stderr.strip()[-500:]}")
    return elapsed, used, out


def plain_loop(cwd: Path, episodes: int = EPISODES) -> Run:
    elapsed, cpu, out = _timed([sys.executable, "-c", PLAIN_LOOP, ENV_ID, str(episodes)], cwd)
    return Run(int(out.stdout.split()[-1]), elapsed, cpu)


def record(spool: Path, cwd: Path, workers: int | None = None, episodes: int = EPISODES) -> Run:
    """``gymrec-play ... --agent random --headless`` in a fresh process."""
    cmd = [str(BIN / "gymrec-play"), ENV_ID, "--agent", "random", "--headless", "--episodes", str(episodes),
           "--seed", "1", "--spool", str(spool)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    elapsed, cpu, out = _timed(cmd, cwd)
    match = _STEPS.search(out.stderr)
    if match is None:
        raise RuntimeError(f"gymrec-play printed no step count: {out.stderr.strip()[-300:]}")
    return Run(int(match.group(1)), elapsed, cpu)


def replay(spool: Path, cwd: Path, steps: int) -> Run:
    """``gymrec-replay --all`` in a fresh process; every recorded episode must be verified identical
    (a replay that skipped one would look faster)."""
    episodes = len(list(spool.glob("*.zarr")))
    elapsed, cpu, out = _timed([str(BIN / "gymrec-replay"), "--all", "--spool", str(spool)], cwd)
    identical = sum(1 for line in out.stdout.splitlines() if _IDENTICAL.search(line))
    if out.returncode != 0 or identical != episodes:
        raise RuntimeError(f"{identical} of {episodes} bench episodes replay identically:\n{out.stdout[-800:]}")
    return Run(steps, elapsed, cpu)


def _row(id_: str, what: str, value: float, target: float, note: str) -> dict[str, Any]:
    return {"id": id_, "what": what, "value": value, "fmt": "{:.2f}", "target": f">= {target}",
            "ok": value >= target, "note": note}


def p1_p5() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        raw = plain_loop(root)
        rec = record(root / "spool", root)
        rep = replay(root / "spool", root, rec.steps)
    return [
        _row("P1", f"gymrec-play --agent random --headless / plain loop ({EPISODES} ep)", rec.rate / raw.rate, 0.9,
             f"{rec.rate:,.0f} vs {raw.rate:,.0f} steps/s, {rec.steps:,} steps; per CPU-second "
             f"{rec.cpu_rate:,.0f} vs {raw.cpu_rate:,.0f} ({rec.cpu_rate / raw.cpu_rate:.2f})"),
        _row("P5", "gymrec-replay --all / plain loop (same 40 episodes)", rep.rate / raw.rate, 0.9,
             f"{rep.rate:,.0f} vs {raw.rate:,.0f} steps/s; per CPU-second {rep.cpu_rate:,.0f} "
             f"({rep.cpu_rate / raw.cpu_rate:.2f})"),
    ]


def p11() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        one = record(root / "one", root, workers=1)
        two = record(root / "two", root, workers=2)
    return [_row("P11", "gymrec-play --workers 2 / --workers 1, aggregate steps/s", two.rate / one.rate, 1.5,
                 f"{two.rate:,.0f} vs {one.rate:,.0f} steps/s ({two.steps:,} / {one.steps:,} steps, {EPISODES} ep), "
                 f"CPU {two.cpu:.1f} / {one.cpu:.1f} s")]
