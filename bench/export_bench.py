"""Export measurements: Minari export and MP4 encoding speed (frames/s), MP4 bytes per frame.

Four Breakout NoFrameskip random-play games (at most 2,000 steps each), recorded by the real recorder,
exported the way ``gymrec-export`` does it (spool source, no progress bar); the video is the longest.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from gymrec.export.minari_export import MinariConfig, export_minari
from gymrec.export.progress import silent
from gymrec.export.video import VideoOptions, encode
from gymrec.shared.dataset.select import Selection, jobs
from gymrec.shared.spool.sources import SpoolSource

ENV_ID = "BreakoutNoFrameskip-v4"
STEPS = 2_000
EPISODES = 4  # random Breakout games end after ~500 steps


def _record(spool: Path) -> Path:
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import Session
    from gymrec.shared.envs.backends import make_env

    made = make_env(ENV_ID, {})
    config = PlayConfig(env_id=ENV_ID, spool=spool, seed=7, agent="random", headless=True, episodes=EPISODES,
                        max_steps=STEPS)
    try:
        sealed = Session(config, made).run().sealed
    finally:
        made.env.close()
    return max(sealed, key=lambda p: SpoolSource(p).length)  # the longest game is the video


def _no_skips(line: str) -> None:
    raise RuntimeError(f"the bench's export left an episode out: {line}")  # the figures would be of less work


def _minari(spool: Path, root: Path) -> tuple[float, int]:
    config = MinariConfig(dataset_id="bench/breakout-v0", datasets_root=root, env_id=None, force=False,
                          credit_players=False, code_permalink=None, source_label=str(spool))
    started = time.perf_counter()
    result = export_minari(jobs(Selection(key=str(spool), all_=True, spool=spool)), config, silent, _no_skips)
    return time.perf_counter() - started, result.steps + result.episodes


def _video(episode: Path, out: Path, lossless: bool) -> tuple[float, int, int]:
    started = time.perf_counter()
    result = encode(SpoolSource(episode), out, VideoOptions(lossless=lossless), silent)
    return time.perf_counter() - started, result.frames, result.bytes


def rows() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        spool.mkdir()
        episode = _record(spool)
        seconds, frames = _minari(spool, Path(tmp) / "minari")
        size = sum(p.stat().st_size for p in (Path(tmp) / "minari").rglob("*") if p.is_file())
        out.append({"id": "E1", "what": "Minari export frames/s (lossless, read-back check)", "value": frames / seconds,
                    "fmt": "{:,.0f}", "target": "info", "ok": True,
                    "note": f"{frames:,} frames, {size / frames:,.0f} B/frame; pyarrow's parquet writer is most of it"})
        for mode, lossless in (("default", False), ("lossless", True)):
            seconds, frames, size = _video(episode, Path(tmp) / f"{mode}.mp4", lossless)
            out.append({"id": "E2", "what": f"MP4 export frames/s ({mode})", "value": frames / seconds,
                        "fmt": "{:,.0f}", "target": ">= 60", "ok": frames / seconds >= 60,  # faster than the console plays
                        "note": "libx264rgb crf 0" if lossless else "libx264 yuv420p crf 18"})
            out.append({"id": "E3", "what": f"MP4 bytes per frame ({mode})", "value": size / frames, "fmt": "{:,.0f}",
                        "target": "info", "ok": True, "note": f"{frames:,} frames, Breakout 160x210"})
    return out
