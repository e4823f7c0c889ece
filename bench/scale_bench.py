"""Dataset format 2 at scale for ``make bench``: P8 (a backlog of 1,000 episodes), P9 (a fresh uploader
adding 20 into repos of 10 and 1,010 episodes) and the read speed of the result, on the local test Hub.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SCALE_ENVS = ("BreakoutNoFrameskip-v4", "PongNoFrameskip-v4")


def _template(spool: Path, env_id: str, steps: int, seed: int) -> Path:
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import Session
    from gymrec.shared.envs.backends import make_env

    made = make_env(env_id, {})
    try:
        config = PlayConfig(env_id=env_id, spool=spool, seed=seed, agent="random", headless=True, episodes=1,
                            max_steps=steps)  # fmt: skip
        (path,) = Session(config, made).run().sealed
        return path
    finally:
        made.env.close()


def backlog(spool: Path, episodes: int, steps: int = 3) -> list[Path]:
    """A backlogged spool of ``episodes`` short episodes of two envs: two real recordings, cloned.

    A clone is the recording under a fresh UUID (the attributes' id rewritten): a valid, replayable
    episode, made in milliseconds instead of a recorder's start-up per episode.
    """
    import json
    import uuid

    from gymrec.shared.spool.checksums import resign

    (spool / ".templates").mkdir(parents=True, exist_ok=True)
    templates = [_template(spool / ".templates", env_id, steps, seed) for seed, env_id in enumerate(SCALE_ENVS)]
    out = []
    for i in range(episodes):
        new_id = str(uuid.uuid4())
        dest = spool / f"{new_id}.zarr"
        shutil.copytree(templates[i % len(templates)], dest)
        meta = json.loads((dest / "zarr.json").read_text())
        # A tool copying an episode on purpose re-signs its attributes (they carry their own crc32c).
        meta["attributes"] = resign({**meta["attributes"], "episode_id": new_id})
        (dest / "zarr.json").write_text(json.dumps(meta))
        out.append(dest)
    shutil.rmtree(spool / ".templates")
    return out


def _upload_once(spool: Path, work: Path, hub: Any, repo: str, token: str) -> dict[str, Any]:
    from gymrec.uploader.config import UploaderConfig
    from gymrec.uploader.convert import ConvertOptions
    from gymrec.uploader.daemon import Uploader

    hub.reset_stats()
    config = UploaderConfig(spool=spool, local_dir=work / "unused", repo_id=repo, endpoint=hub.endpoint, token=token,
                            once=True, nice=0, convert=ConvertOptions(workers=2))  # fmt: skip
    start = time.perf_counter()
    summary = Uploader(config, threading.Event()).run()
    seconds = time.perf_counter() - start
    return {"requests": sum(hub.stats.values()), "commits": summary.commits, "seconds": seconds,
            "episodes": len(summary.uploaded), "failed": len(summary.failed)}


def _folders(paths: list[str]) -> int:
    """The most entries (files and sub-folders) any one folder of the repo holds."""
    from collections import Counter

    entries: Counter[str] = Counter()
    seen: set[str] = set()
    for path in paths:
        parts = path.split("/")
        for depth in range(len(parts)):
            node = "/".join(parts[: depth + 1])
            if node not in seen:
                seen.add(node)
                entries["/".join(parts[:depth])] += 1
    return max(entries.values())


def bench_scale(work: Path, episodes: int = 1000, fresh: int = 20) -> dict[str, Any]:
    """P8 (a backlog of ``episodes``), P9 (``fresh`` more into repos of 10 and ``episodes``), read speed."""
    from huggingface_hub.utils import disable_progress_bars

    from tests.hub import running_hub

    disable_progress_bars()
    token = "hf_bench_token"
    out: dict[str, Any] = {}
    with running_hub(token=token, tmp_path=work) as hub:
        backlog(work / "p8", episodes)
        p8 = _upload_once(work / "p8", work, hub, "bench/p8", token)
        files = list(hub.files("bench/p8"))
        out["p8"] = p8 | {"files": len(files), "largest_folder": _folders(files), "total_commits": len(hub.commits("bench/p8"))}
        backlog(work / "small", 10)
        _upload_once(work / "small", work, hub, "bench/p9-small", token)
        for name, repo in (("p9_small", "bench/p9-small"), ("p9_large", "bench/p8")):
            backlog(work / name, fresh)
            out[name] = _upload_once(work / name, work, hub, repo, token)
        out["read"] = bench_read(hub, "bench/p8", work)
    return out


def bench_read(hub: Any, repo: str, work: Path) -> dict[str, float]:
    """``load_dataset`` of every config plus every step row, in rows/s (a fresh subprocess).

    Format 3 keeps frames in blocks that ``load_dataset`` does not decode (R-read measures frames); this is
    what a ``datasets`` user browsing the scalar columns gets."""
    import json

    code = (
        "import json, sys, time, numpy as np, datasets\n"
        "start = time.perf_counter(); frames = 0\n"
        f"for config in {list(layout_configs())!r}:\n"
        f"    ds = datasets.load_dataset({repo!r}, config, split='train')\n"
        "    for row in ds: frames += row['step'] >= 0\n"
        "json.dump({'frames': frames, 'seconds': time.perf_counter() - start}, sys.stdout)\n"
    )
    env = {**__import__("os").environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "hf_bench_token",
           "HF_HOME": str(work / "read-hf-home"), "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"read bench failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout)
    return {"frames": result["frames"], "frames_per_s": result["frames"] / result["seconds"]}


def layout_configs() -> list[str]:
    from gymrec.shared.dataset import layout

    return [layout.env_slug(e) for e in SCALE_ENVS]


def scale_rows() -> list[dict[str, Any]]:
    """P8, P9 and step-row read speed (dataset format 3); about two minutes on 2 cores."""
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_scale(Path(tmp))
    p8, small, large, read = r["p8"], r["p9_small"], r["p9_large"], r["read"]
    n = p8["episodes"]
    per = p8["requests"] / max(n, 1)
    delta = large["requests"] / 20 - small["requests"] / 20
    return [
        {"id": "P8", "what": f"HTTP requests per episode, {n} episodes of 2 envs", "value": per, "fmt": "{:.3f}",
         "target": "<= 0.2", "ok": per <= 0.2 and p8["failed"] == 0,
         "note": f"{p8['requests']} requests, {p8['seconds']:.0f} s, default settings, backlogged spool"},
        {"id": "P8", "what": "episodes per commit", "value": n / max(p8["commits"], 1), "fmt": "{:.0f}",
         "target": ">= 50", "ok": n / max(p8["commits"], 1) >= 50, "note": f"{p8['commits']} commits"},
        {"id": "P8", "what": "files in the repo", "value": p8["files"], "fmt": "{:d}", "target": f"<= {n // 20 + 10}",
         "ok": p8["files"] <= n // 20 + 10, "note": f"largest folder {p8['largest_folder']} entries"},
        {"id": "P9", "what": "fresh uploader +20 episodes: requests/episode, 1,010 vs 10", "value": delta,
         "fmt": "{:+.2f}", "target": "|d| <= 2", "ok": abs(delta) <= 2,
         "note": f"{large['requests'] / 20:.2f} into {n + 10:,} episodes, {small['requests'] / 20:.2f} into 10"},
        {"id": "P8", "what": "read: load_dataset + every step row (rows/s)", "value": read["frames_per_s"],
         "fmt": "{:,.0f}", "target": "report", "ok": True,
         "note": f"{read['frames']:,} rows, both configs (format 3: frames are in blocks, see R-read)"},
    ]
