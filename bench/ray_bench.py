"""P12 for ``make bench``: ``gymrec-play --ray`` against ``--workers``, and the seconds from a node
loss to its episodes being re-planned, on real Ray clusters of this machine (tests/ray_cluster.py).

The clusters are started before anything is timed: the ratio is Ray's overhead on a run (joining,
actors, a remote call per episode), not a cluster's start-up.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.cli_bench import BIN, ENV_ID, EPISODES, Run, _row, _timed, record

NODE_LOSS_EPISODES = 8


def record_ray(address: str, cwd: Path, env: dict[str, str], run: str, workers: int = 2, episodes: int = EPISODES) -> Run:
    """``gymrec-play ... --ray ADDRESS --workers N`` in a fresh process, on a cluster already up."""
    import re

    cmd = [str(BIN / "gymrec-play"), ENV_ID, "--agent", "random", "--ray", address, "--workers", str(workers),
           "--episodes", str(episodes), "--seed", "1", "--run", run]
    elapsed, cpu, out = _timed(cmd, cwd, env)
    match = re.search(r"(\d+) steps on", out.stderr)
    if match is None:
        raise RuntimeError(f"gymrec-play --ray printed no step count: {out.stderr.strip()[-300:]}")
    return Run(int(match.group(1)), elapsed, cpu)


def warm_up(address: str, cwd: Path, env: dict[str, str]) -> None:
    """A first job on a new cluster, as any cluster in use has had: Ray prestarts its pool of worker
    processes when the first driver joins (~1 CPU-s on this machine, once per cluster), which would
    otherwise land in the timed run."""
    code = f"import ray; ray.init(address={address!r}, logging_level='ERROR', log_to_driver=False); ray.shutdown()"
    subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True, capture_output=True)
    time.sleep(2.0)  # the prestarted workers import ray meanwhile


def p12_overhead(root: Path) -> dict[str, Any]:
    """Ray, workers, workers, Ray (ABBA): this machine's speed drifts by up to 30 % within minutes
    (40-episode --workers runs took 3.4 s, then 4.7-5.9 s a quarter of an hour later, idle both times),
    and the ratio of the sums cancels a steady drift."""
    from tests.ray_cluster import node_env, ray_cluster

    root.mkdir(parents=True, exist_ok=True)  # the commands' working directory
    ray: list[Run] = []
    workers: list[Run] = []
    for turn in ("a", "b"):
        if turn == "b":  # the --workers runs without a cluster up: its idle load (~3 % of the CPUs) is Ray's
            workers += [record(root / "workers-a", root, workers=2), record(root / "workers-b", root, workers=2)]
        with ray_cluster(root / f"cluster-{turn}", names=("bench",), slots=2) as cluster:
            env = node_env(root / f"ray-spool-{turn}", cluster.root / "home")
            warm_up(cluster.address, root, env)
            ray.append(record_ray(cluster.address, root, env, f"bench-p12-{turn}"))
    ray_rate = sum(r.steps for r in ray) / sum(r.wall for r in ray)
    workers_rate = sum(r.steps for r in workers) / sum(r.wall for r in workers)
    each = ", ".join(f"{r.rate:,.0f}" for r in (ray[0], *workers, ray[1]))
    return _row("P12", "gymrec-play --ray (2 actors, local cluster) / --workers 2, steps/s", ray_rate / workers_rate,
                0.85, f"{ray_rate:,.0f} vs {workers_rate:,.0f} steps/s, {EPISODES} episodes a run, in the order "
                      f"Ray, workers, workers, Ray: {each}; CPU {sum(r.cpu for r in ray):.1f} / "
                      f"{sum(r.cpu for r in workers):.1f} s (the Ray processes' not counted)")


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
