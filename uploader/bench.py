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
import uuid
from pathlib import Path
from typing import Any

from shared import schema
from shared.episode import Episode
from shared.spool import sealed_episodes
from uploader.convert import ConvertOptions, convert_episode

BREAKOUT = "BreakoutNoFrameskip-v4"
REPO_ROOT = Path(__file__).resolve().parents[1]


def record_breakout(spool: Path, steps: int, seed: int = 0) -> Path:
    """A random-play Breakout episode of exactly ``steps`` steps (the game restarts when it ends)."""
    from recorder.writer import EpisodeWriter
    from shared.backends import make_env
    from shared.spaces import describe_space, encode_action, image_key, split_observation

    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(BREAKOUT, {})
    env = made.env
    try:
        env.action_space.seed(seed)
        action_desc, obs_desc = describe_space(env.action_space), describe_space(env.observation_space)
        attrs = {
            "schema_version": schema.SCHEMA_VERSION, "episode_id": str(uuid.uuid4()), "env_id": BREAKOUT,
            "env_kwargs": made.kwargs, "backend": made.backend, "seed": seed, "action_space": action_desc,
            "observation_space": obs_desc, "image_key": image_key(obs_desc), "fps": made.native_fps,
            "versions": made.versions, "keymap": None, "collector": "bench", "player": "random",
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "chunk_steps": schema.CHUNK_STEPS,
        }  # fmt: skip
        writer = EpisodeWriter.create(spool, attrs, backpressure=True)
        obs, info = env.reset(seed=seed)
        for _ in range(steps):
            action = env.action_space.sample()
            writer.record(split_observation(obs), encode_action(action_desc, action), info)
            obs, reward, terminated, truncated, info = env.step(action)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
            if terminated or truncated:
                obs, info = env.reset()
        return writer.seal(split_observation(obs), "truncated")
    finally:
        env.close()


def _breakout(spool: Path) -> Path:
    for path in sealed_episodes(spool):
        if Episode(path).attrs["env_id"] == BREAKOUT:
            return path
    return record_breakout(spool, 5000)


def bench_p4(spool_with_breakout_episode: Path, workers: int | None = None) -> dict[str, float]:
    """Convert a Breakout episode; dataset bytes per frame (all files) and frames per second."""
    episode = Episode(_breakout(spool_with_breakout_episode))
    options = ConvertOptions() if workers is None else ConvertOptions(workers=workers)
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        converted = convert_episode(episode, Path(out), options)
        seconds = time.perf_counter() - start
        size = sum((Path(out) / p).stat().st_size for p in converted.episode_files)
    return {"bytes_per_frame": size / episode.length, "frames_per_s": episode.length / seconds, "frames": episode.length}


def bench_p6(spool: Path, frames: int = 100_000) -> float:
    """Peak RSS (MB) of a fresh process converting one ``frames``-step Breakout episode."""
    found = [p for p in sealed_episodes(spool) if Episode(p).length >= frames]
    path = found[0] if found else record_breakout(spool, frames)
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

    from uploader import layout
    from uploader.config import UploaderConfig
    from uploader.daemon import Uploader

    spool = work / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    staging = work / "staging"
    sealed = record_breakout(staging, frames)  # recorded aside, then moved in: the seal is the rename
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
