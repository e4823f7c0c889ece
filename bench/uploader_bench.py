"""P4 for ``make bench``: what the dataset gains per frame, and how fast the uploader converts.

Bytes count every file the uploader writes for the episodes: data shards, index shards,
``meta/info.json``, the card ``README.md`` and the previews (a local dataset: the same layout the
Hub gets). Speed is the uploader's whole ``--once`` run (claim, convert, write, index, card) and,
beside it, conversion alone, the figure this row reported before.
P6's uploader half and P7 are in daemon_bench; P8, P9 and the read speed in scale_bench.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gymrec.shared.spool.directory import sealed_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.uploader.convert import ConvertOptions, convert_episode

BREAKOUT = "BreakoutNoFrameskip-v4"


def record_breakout(spool: Path, steps: int, seed: int = 0) -> list[Path]:
    """Whole games of random Breakout play (FIRE included: the ball moves) through the recorder's
    own Session, each ending when its lives run out, until ``steps`` frames are recorded."""
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import Session
    from gymrec.shared.envs.backends import make_env

    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(BREAKOUT, {})
    try:
        paths: list[Path] = []
        total = 0
        while total < steps:
            config = PlayConfig(env_id=BREAKOUT, spool=spool, seed=seed + len(paths), agent="random",
                                headless=True, episodes=1, max_steps=steps - total)
            result = Session(config, made).run()
            paths += result.sealed
            total += result.steps
        return paths
    finally:
        made.env.close()


def _conversion_only(episodes: list[Episode], options: ConvertOptions) -> float:
    """Frames/s of ``convert_episode`` alone (the step rows and the final image; no dataset files)."""
    seconds = 0.0
    with tempfile.TemporaryDirectory() as out:
        for episode in episodes:
            start = time.perf_counter()
            convert_episode(episode, Path(out) / episode.id, options)
            seconds += time.perf_counter() - start
    return sum(e.length for e in episodes) / seconds


def _kind(path: str) -> str:
    """Which part of the dataset a file is, for the note."""
    from gymrec.shared.dataset import layout

    for prefix, kind in ((layout.INDEX_DIR, "index"), (layout.PREVIEW_DIR, "previews"), (layout.DATA_DIR, "data"),
                         (layout.FRAMES_DIR, "frames"),
                         (layout.INFO_PATH, "info.json"), (layout.CARD_PATH, "card")):
        if path.startswith(prefix):
            return kind
    return "other"


def bench_p4(spool: Path, work: Path) -> dict[str, Any]:
    """Upload every episode in ``spool`` to a local dataset with the real uploader (``--once --local-dir``)."""
    from gymrec.uploader.config import UploaderConfig
    from gymrec.uploader.daemon import Uploader

    episodes = [Episode(p) for p in sealed_episodes(spool)]
    frames = sum(e.length for e in episodes)
    options = ConvertOptions()
    conversion = _conversion_only(episodes, options)
    dataset = work / "dataset"
    # nice=0: this runs in the bench's own process, which os.nice would lower for good.
    config = UploaderConfig(spool=spool, local_dir=dataset, local_only=True, once=True, nice=0, convert=options)
    start, cpu = time.perf_counter(), time.process_time()
    summary = Uploader(config, threading.Event()).run()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    if len(summary.uploaded) != len(episodes) or summary.failed:
        raise RuntimeError(f"P4: {len(summary.uploaded)} of {len(episodes)} episodes uploaded, {len(summary.failed)} failed")
    files = [f for f in dataset.rglob("*") if f.is_file()]
    by_kind: dict[str, int] = {}
    for f in files:
        kind = _kind(f.relative_to(dataset).as_posix())
        by_kind[kind] = by_kind.get(kind, 0) + f.stat().st_size
    size = sum(by_kind.values())
    return {"bytes_per_frame": size / frames, "frames_per_s": frames / seconds, "frames_per_cpu_s": frames / cpu,
            "conversion_per_s": conversion,
            "frames": frames, "episodes": len(episodes), "files": len(files), "by_kind": by_kind}


def rows() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        record_breakout(spool, 5_000, seed=1)
        p4 = bench_p4(spool, Path(tmp))
    kinds = ", ".join(f"{k} {v / p4['frames']:.1f}" for k, v in sorted(p4["by_kind"].items(), key=lambda kv: -kv[1]))
    return [
        {"id": "P4", "what": "dataset bytes per frame, every file (Breakout random play)", "value": p4["bytes_per_frame"],
         "fmt": "{:.0f}", "target": "<= 193", "ok": p4["bytes_per_frame"] <= 193,
         "note": f"{p4['frames']:,} frames in {p4['episodes']} games, {p4['files']} files; B/frame: {kinds}"},
        {"id": "P4", "what": "uploader --once to a local dataset, frames/s", "value": p4["frames_per_s"],
         "fmt": "{:,.0f}", "target": ">= 1000", "ok": p4["frames_per_s"] >= 1000,
         "note": f"claim, convert, shards, index, card; {p4['frames_per_cpu_s']:,.0f} per CPU-s; conversion alone {p4['conversion_per_s']:,.0f}/s (lossless WebP)"},
    ]
