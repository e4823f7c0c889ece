"""P5: replay-verify speed relative to raw ``env.step`` with the same actions and seed."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from gymrec.replay.sources import SpoolSource
from gymrec.replay.verify import Checker, VerifyOptions, run
from gymrec.shared.attrs import make_env_for


def bench_p5(spool_episode_path: Path, repeats: int = 3) -> dict[str, float]:
    """Best-of-``repeats`` steps/s of both loops, in one process, with one env.

    ``verify_steps_per_s`` counts reading the recorded steps in bulk (actions, rewards, flags, hashes)
    as well as the hot loop; env creation is left out of both sides.
    """
    source = SpoolSource(Path(spool_episode_path))
    made = make_env_for(source.attrs)
    seed = source.attrs.seed
    options = VerifyOptions(diff_dir=Path(tempfile.gettempdir()) / "gymrec-diffs")
    raw_best = verify_best = float("inf")
    try:
        actions = source.steps().actions
        for _ in range(repeats):
            env = made.env
            started = time.perf_counter()
            env.reset(seed=seed)
            for action in actions:
                env.step(action)
            raw_best = min(raw_best, time.perf_counter() - started)

            started = time.perf_counter()
            steps = source.steps()
            divergence, _ = run(source, steps, made, Checker(source, steps, options))
            verify_best = min(verify_best, time.perf_counter() - started)
            if divergence is not None:
                raise AssertionError(f"the bench episode does not verify: {divergence.line()}")
    finally:
        made.env.close()
    raw = len(actions) / raw_best
    verified = source.length / verify_best
    return {"ratio": verified / raw, "verify_steps_per_s": verified, "raw_steps_per_s": raw, "steps": float(source.length)}
