"""P4 for ``make bench``: what the dataset gains per frame, and how fast the uploader converts.

Bytes count every file the uploader writes for the episodes: data shards, frame blocks, index shards,
``meta/info.json``, the card ``README.md`` and the previews (a local dataset: the same layout the
Hub gets), for Breakout and VizDoom; "data + frames" is what format 2 kept in its data shards
(56 B a frame on Breakout in issue 25, 53 in this bench's last format-2 run). Speed is the uploader's whole ``--once`` run (claim, convert, write, index, card) and,
beside it, conversion alone, the figure this row reported before.
P6's uploader half and P7 are in daemon_bench; P8, P9 and the read speed in scale_bench.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gymrec.shared.spool.directory import sealed_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.uploader.convert import ConvertOptions, convert_episode

BREAKOUT = "BreakoutNoFrameskip-v4"
VIZDOOM = "VizdoomHealthGathering-v1"
FORMAT2_DATA_BYTES = 56  # Breakout, format 2's data shards (issue 25)


def record_breakout(spool: Path, steps: int, seed: int = 0, env_id: str = BREAKOUT) -> list[Path]:
    """Whole games of random play (Breakout: FIRE included, the ball moves) through the recorder's
    own Session, each ending when it ends, until ``steps`` frames are recorded."""
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import Session
    from gymrec.shared.envs.backends import make_env

    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(env_id, {})
    try:
        paths: list[Path] = []
        total = 0
        while total < steps:
            config = PlayConfig(env_id=env_id, spool=spool, seed=seed + len(paths), agent="random",
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


def _measure(env_id: str, frames: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        cwd = os.getcwd()
        os.chdir(tmp)  # VizDoom writes _vizdoom.ini into the CWD
        try:
            spool = Path(tmp) / "spool"
            record_breakout(spool, frames, seed=1, env_id=env_id)
            return bench_p4(spool, Path(tmp))
        finally:
            os.chdir(cwd)


def _bytes_row(name: str, p4: dict[str, Any]) -> dict[str, Any]:
    kinds = ", ".join(f"{k} {v / p4['frames']:.1f}" for k, v in sorted(p4["by_kind"].items(), key=lambda kv: -kv[1]))
    blocks = (p4["by_kind"].get("data", 0) + p4["by_kind"].get("frames", 0)) / p4["frames"]
    return {"id": "P4", "what": f"dataset bytes per frame, every file ({name} random play)", "value": p4["bytes_per_frame"],
            "fmt": "{:.0f}", "target": "data + frames < format 2", "ok": name != "Breakout" or blocks < FORMAT2_DATA_BYTES,
            "note": f"{p4['frames']:,} frames in {p4['episodes']} games, {p4['files']} files; data + frames {blocks:.1f}; "
                    f"B/frame: {kinds}"}  # fmt: skip


def rows(frames: int = 5_000) -> list[dict[str, Any]]:
    p4 = _measure(BREAKOUT, frames)
    doom = _measure(VIZDOOM, frames // 2)
    return [
        _bytes_row("Breakout", p4),
        _bytes_row("VizDoom", doom),
        {"id": "P4", "what": "uploader --once to a local dataset, frames/s", "value": p4["frames_per_s"],
         "fmt": "{:,.0f}", "target": ">= 10000", "ok": p4["frames_per_s"] >= 10_000,
         "note": f"Breakout; claim, convert, shards, index, card; {p4['frames_per_cpu_s']:,.0f} per CPU-s; conversion "
                 f"alone {p4['conversion_per_s']:,.0f}/s (format 3: palette + XOR blocks, zstd 7 sparse / 3 dense); VizDoom {doom['frames_per_s']:,.0f}/s"},
    ]
