"""Helpers for the uploader tests: record small real episodes, run the CLI, compare with the spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared.spool.episode import Episode
from tests.recording import record_episode  # noqa: F401  (re-exported for the suites)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def record_in_subprocess(spool: Path, env_id: str, steps: int, seed: int, cwd: Path, end_reason: str | None = None) -> Path:
    """Record in a child process: stable-retro allows one emulator per process, VizDoom litters its CWD."""
    code = (
        f"import sys; sys.path[:0] = [{str(REPO)!r}, {str(REPO / 'tests')!r}]; from uploader_helpers import record_episode; "
        f"from pathlib import Path; print(record_episode(Path({str(spool)!r}), {env_id!r}, {steps}, {seed}, end_reason={end_reason!r}))"
    )
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    return Path(done.stdout.strip().splitlines()[-1])


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a CLI subprocess: no stray token or endpoint from the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GYMREC_"))}
    env |= {"HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    return env | extra


def run_uploader(args: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    exe = BIN / "gymrec-uploader"
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def spool_frames(path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(every step's image observation, the final one, the attributes) of a sealed episode."""
    episode = Episode(path)
    key = episode.attrs.image_key
    frames = episode.obs(key, 0, episode.length)
    final = episode.obs(key, episode.length, episode.length + 1)[0]
    return frames, final, episode.attrs.as_dict()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def index_rows_of(files: dict[str, bytes]) -> dict[str, list[dict[str, Any]]]:
    """{episode id: its index rows} over every index shard in ``files`` (path -> bytes); one row each when sound."""
    import io

    import pyarrow.parquet as pq

    from gymrec.shared.dataset import layout

    out: dict[str, list[dict[str, Any]]] = {}
    for path, blob in sorted(files.items()):
        if layout.is_index_path(path):
            for row in pq.read_table(io.BytesIO(blob)).to_pylist():
                out.setdefault(row["episode_id"], []).append(row | {"index_file": path})
    return out


def local_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}


def local_index(root: Path) -> dict[str, dict[str, Any]]:
    """{episode id: index row} of a local dataset (asserting each episode is listed once)."""
    rows = index_rows_of(local_files(root))
    assert all(len(v) == 1 for v in rows.values()), {k: len(v) for k, v in rows.items() if len(v) > 1}
    return {k: v[0] for k, v in rows.items()}


def daemon_until(args: list[str], cwd: Path, env: dict[str, str], ready: Any, what: str, sig: int = 15,
                 timeout: float = 120) -> tuple[int, str, str]:
    """Run the uploader daemon until ``ready()`` holds, send it ``sig`` (SIGTERM; SIGINT is Ctrl-C), and
    return (exit code, stdout, stderr); ``what`` names the wait in a failure."""
    import time

    proc = subprocess.Popen([str(BIN / "gymrec-uploader"), *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            assert time.monotonic() < deadline and proc.poll() is None, f"the daemon never {what}"
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, err


def to_dataset(episodes: list[Path], root: Path) -> Path:
    """A local dataset (the current format) of ``episodes``, written by the uploader's own batch writer."""
    from gymrec.uploader.convert import ConvertOptions, convert_episode
    from gymrec.uploader.local import LocalWriter
    from gymrec.uploader.shards import build_batch

    options = ConvertOptions(workers=1)
    work = root.parent / f"{root.name}-work"
    converted = [convert_episode(Episode(episode), work / Path(episode).stem, options) for episode in episodes]
    LocalWriter(root).add(build_batch(converted, work / "batch", options))
    return root
