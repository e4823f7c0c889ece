"""P12 for ``make bench``: ``gymrec-play --ray`` against ``--workers``, and the seconds from a node
loss to its episodes being re-planned, on real Ray clusters of this machine (tests/ray_cluster.py).

The clusters are started before anything is timed: the ratio is Ray's overhead on a run (joining,
actors, a remote call per episode), not a cluster's start-up.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.cli_bench import BIN, ENV_ID, EPISODES, Run, _row, _timed, record

NODE_LOSS_EPISODES = 8


def record_ray(address: str, cwd: Path, env: dict[str, str], workers: int = 2, episodes: int = EPISODES) -> Run:
    """``gymrec-play ... --ray ADDRESS --workers N`` in a fresh process, on a cluster already up."""
    import re

    cmd = [str(BIN / "gymrec-play"), ENV_ID, "--agent", "random", "--ray", address, "--workers", str(workers),
           "--episodes", str(episodes), "--seed", "1", "--run", "bench-p12"]
    elapsed, cpu, out = _timed(cmd, cwd, env)
    match = re.search(r"(\d+) steps on", out.stderr)
    if match is None:
        raise RuntimeError(f"gymrec-play --ray printed no step count: {out.stderr.strip()[-300:]}")
    return Run(int(match.group(1)), elapsed, cpu)


def p12_overhead(root: Path) -> dict[str, Any]:
    from tests.ray_cluster import node_env, ray_cluster

    root.mkdir(parents=True, exist_ok=True)  # the commands' working directory
    workers = record(root / "workers", root, workers=2)
    with ray_cluster(root / "cluster", names=("bench",), slots=2) as cluster:
        ray = record_ray(cluster.address, root, node_env(root / "ray-spool", cluster.root / "home"))
    return _row("P12", "gymrec-play --ray (2 actors, local cluster) / --workers 2, steps/s", ray.rate / workers.rate,
                0.85, f"{ray.rate:,.0f} vs {workers.rate:,.0f} steps/s ({ray.steps:,} / {workers.steps:,} steps, "
                      f"{EPISODES} ep), CPU {ray.cpu:.1f} / {workers.cpu:.1f} s (the Ray processes' not counted)")


def p12_node_loss(root: Path) -> dict[str, Any]:
    """A driver in this process; node b lost once it records; seconds until the first of its episodes is re-planned."""
    import ray

    from gymrec.recorder.cluster.driver import Driver, RunSettings
    from gymrec.recorder.cluster.plan import plan_run
    from gymrec.recorder.config import PlayConfig
    from gymrec.shared.cli.progress import NoProgress
    from tests.ray_cluster import ray_cluster

    with ray_cluster(root / "cluster") as cluster:
        config = PlayConfig(env_id=ENV_ID, spool=root / "unused", agent="tests.slow_agent:act", headless=True,
                            max_steps=400)  # fmt: skip
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        try:
            results: list[Any] = []
            driver = threading.Thread(target=lambda: results.append(
                Driver(ray, config, RunSettings(), NoProgress()).run(plan_run(1, "bench-loss", NODE_LOSS_EPISODES))))
            driver.start()
            b = cluster.nodes["b"]
            while not list(b.spool.glob("*.partial")):
                time.sleep(0.02)
            lost_at = time.time()
            b.stop()
            driver.join()
        finally:
            ray.shutdown()
    (result,) = results
    delay = min(result.replanned_at) - lost_at
    return {"id": "P12", "what": "node loss -> its episodes re-planned (s)", "value": delay, "fmt": "{:.1f}",
            "target": "<= 10", "ok": delay <= 10,
            "note": f"{result.retried} re-planned, {len(result.recorded)}/{result.planned} recorded; Ray health check "
                    "every 0.5 s, dead after 4 misses (tests/ray_cluster.py)"}


def p12() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        return [p12_overhead(root / "overhead"), p12_node_loss(root / "loss")]
