"""Benchmarks P4, P6, P7 for ``make bench`` (callables; the bench package prints the table).

- P4: dataset bytes per frame and conversion frames/s on Breakout random play.
- P6: peak RSS (MB) of a process converting one 100k-frame episode.
- P7: seconds from an episode being sealed to its commit being visible on the local test Hub.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared.episode import Episode
from gymrec.shared.spool import sealed_episodes
from gymrec.uploader.convert import ConvertOptions, convert_episode

BREAKOUT = "BreakoutNoFrameskip-v4"
REPO_ROOT = Path(__file__).resolve().parents[1]


def record_breakout(spool: Path, steps: int, seed: int = 0, serve: bool = False) -> list[Path]:
    """Real, replayable Breakout episodes through the recorder's own Session.

    ``serve=True``: random play, whole games (each ends when the lives run out) until ``steps``
    frames are recorded. ``serve=False``: one episode of exactly ``steps`` steps from a random
    policy that never presses FIRE, so the ball is never served and the game never ends.
    """
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import Session
    from gymrec.shared.backends import make_env

    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(BREAKOUT, {})
    try:
        if serve:
            paths: list[Path] = []
            total = 0
            while total < steps:
                config = PlayConfig(env_id=BREAKOUT, spool=spool, seed=seed + len(paths), agent="random",
                                    headless=True, episodes=1, max_steps=steps - total)
                result = Session(config, made).run()
                paths += result.sealed
                total += result.steps
            return paths
        config = PlayConfig(env_id=BREAKOUT, spool=spool, seed=seed, agent="random", headless=True, episodes=1,
                            max_steps=steps)
        session = Session(config, made)
        rng = np.random.default_rng(seed)
        session.agent = lambda _obs: int(rng.choice([0, 2, 3]))  # NOOP, RIGHT, LEFT: never FIRE
        return session.run().sealed
    finally:
        made.env.close()


def bench_p4(spool: Path, workers: int | None = None) -> dict[str, float]:
    """Convert every Breakout episode in ``spool``: dataset bytes per frame (all files) and frames/s."""
    episodes = [Episode(p) for p in sealed_episodes(spool) if Episode(p).attrs.env_id == BREAKOUT]
    if not episodes:
        episodes = [Episode(p) for p in record_breakout(spool, 5000, serve=True)]
    options = ConvertOptions() if workers is None else ConvertOptions(workers=workers)
    size = frames = 0
    seconds = 0.0
    with tempfile.TemporaryDirectory() as out:
        for episode in episodes:
            start = time.perf_counter()
            converted = convert_episode(episode, Path(out), options)
            seconds += time.perf_counter() - start
            size += sum((Path(out) / p).stat().st_size for p in converted.episode_files)
            frames += episode.length
    return {"bytes_per_frame": size / frames, "frames_per_s": frames / seconds, "frames": frames,
            "episodes": len(episodes)}


def bench_p6(spool: Path, frames: int = 100_000) -> float:
    """Peak RSS (MB) of a fresh process converting one ``frames``-step Breakout episode."""
    found = [p for p in sealed_episodes(spool) if Episode(p).length >= frames]
    path = found[0] if found else record_breakout(spool, frames)[0]
    with tempfile.TemporaryDirectory() as out:
        code = (
            "import sys; from pathlib import Path; from shared.episode import Episode; "
            "from uploader.convert import ConvertOptions, convert_episode; "
            f"convert_episode(Episode(Path({str(path.resolve())!r})), Path({out!r}), ConvertOptions())"
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(peak, before) / 1024.0  # ru_maxrss is in KiB on Linux


def bench_p7(work: Path, frames: int = 5000) -> float:
    """Seconds from sealing a ``frames``-step episode to its commit being visible on the local Hub."""
    sys.path.insert(0, str(REPO_ROOT / "tests"))
    from hubserver import running_hub  # the suite's Hub-compatible server

    from gymrec.uploader import layout
    from gymrec.uploader.config import UploaderConfig
    from gymrec.uploader.daemon import Uploader

    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    staging = work / "staging"
    (sealed,) = record_breakout(staging, frames)  # recorded aside, then moved in: the seal is the rename
    token, repo = "hf_bench_token", "bench/gymrec-p7"
    with running_hub(token=token, tmp_path=work) as hub:
        config = UploaderConfig(spool=spool, local_dir=work / "unused", repo_id=repo, endpoint=hub.endpoint,
                                token=token, rescan_interval=5.0, nice=0)  # fmt: skip
        stop = threading.Event()
        uploader = Uploader(config, stop)
        runner = threading.Thread(target=uploader.run, name="gymrec-bench-daemon")
        runner.start()
        try:
            time.sleep(1.0)  # the watcher is up
            target = spool / sealed.name
            start = time.perf_counter()
            shutil.move(str(sealed), str(target))
            meta = layout.meta_path(sealed.stem)
            while not (hub.has_repo(repo) and meta in _paths(hub, repo)):
                if time.perf_counter() - start > 120:
                    raise TimeoutError("P7: the episode never became visible")
                time.sleep(0.05)
            return time.perf_counter() - start
        finally:
            stop.set()
            runner.join()


def _paths(hub: Any, repo: str) -> set[str]:
    commit = hub.commits(repo)[-1]
    return set(commit.files)
