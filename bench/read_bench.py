"""R-read and R-stream for ``make bench``: frames/s of ``gymrec.data`` windows, one process (one core).

Random Breakout and VizDoom play is recorded by the real recorder, published by the uploader's own
batch writer as a local format-3 dataset, and read as 64-step windows in a seeded random order
(stride 64, so an epoch reads each frame once and a window one block; the note gives stride 1): R-read from the directory, R-stream from the suite's Hub server
(the index fetched, then each episode's step rows and its windows' blocks by HTTP range). Beside
them, in the same run, the old way: ``load_dataset`` + every frame as numpy, on the same episodes
as format 2 (a WebP per step), and the window reader on that format-2 copy.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gymrec.data import HubDataset, LocalDataset, Select, WindowReader, WindowSpec
from gymrec.shared.dataset import layout
from gymrec.shared.spool.episode import Episode

GAMES: Mapping[str, tuple[str, int]] = MappingProxyType({"Breakout": ("BreakoutNoFrameskip-v4", 20_000),
                                                         "VizDoom": ("VizdoomBasic-v1", 6_000)})  # fmt: skip
WINDOW = 64
READ_FRAMES = 30_000  # per row: windows are read until this many frames
SMOKE_SCALE = 1.0  # read_rows(scale=0.01) checks the code in seconds (never a figure)


def _record(spool: Path, env_id: str, steps: int, work: Path) -> list[Path]:
    """Episodes of random play until ``steps`` (VizDoom in its own process and CWD: it writes _vizdoom.ini)."""
    from tests.uploader_helpers import record_in_subprocess

    paths: list[Path] = []
    recorded, seed = 0, 0
    while recorded < steps:
        path = record_in_subprocess(spool, env_id, min(2_000, steps - recorded), seed, work)
        paths.append(path)
        recorded += Episode(path).length
        seed += 1
    return paths


def _windows_per_s(reader: WindowReader, frames: int) -> tuple[float, int]:
    """Frames/s of reading windows in the reader's seeded random order until ``frames`` were read."""
    order = reader.order(True, seed=0)
    read, start = 0, time.perf_counter()
    for i in order:
        read += int(reader[int(i)]["valid"].sum())
        if read >= frames:
            break
    return read / (time.perf_counter() - start), read


def _load_dataset_per_s(root: Path, config: str, frames: int) -> tuple[float, int]:
    """``datasets.load_dataset`` of a format-2 directory, then frames as numpy, in frames/s."""
    import datasets
    import numpy as np

    start = time.perf_counter()
    ds = datasets.load_dataset(str(root), config, split="train", cache_dir=str(root.parent / "datasets-cache"))
    read = 0
    for row in ds:
        read += np.asarray(row[layout.OBS_COLUMN]).shape[0] > 0
        if read >= frames:
            break
    return read / (time.perf_counter() - start), read


def _game_rows(name: str, env_id: str, steps: int, work: Path, hub: Any, frames: int) -> list[dict[str, Any]]:
    from tests.format2 import downgrade
    from tests.uploader_helpers import local_files, to_dataset

    episodes = _record(work / "spool", env_id, steps, work)
    v3 = to_dataset(episodes, work / "v3")
    v2 = work / "v2"
    downgrade(v3, v2)
    config = layout.env_slug(env_id)
    hub.seed_repo(f"bench/{config}", local_files(v3))
    # stride 64: an epoch reads every frame once, each window one whole block; stride 1 starts anywhere (two blocks)
    spec, select = WindowSpec(WINDOW, stride=WINDOW), Select(config=config)
    local, n_local = _windows_per_s(WindowReader(LocalDataset(v3), spec, select), frames)
    anywhere, _ = _windows_per_s(WindowReader(LocalDataset(v3), WindowSpec(WINDOW), select), frames // 2)
    stream, n_stream = _windows_per_s(WindowReader(HubDataset(f"bench/{config}", hub.endpoint, local_dir=work / "hub-index"), spec, select),
                                      max(frames // 4, WINDOW))  # fmt: skip
    old, n_old = _windows_per_s(WindowReader(LocalDataset(v2), spec, select), max(frames // 4, WINDOW))
    baseline, n_base = _load_dataset_per_s(v2, config, frames // 4)
    total = sum(Episode(p).length for p in episodes)
    note = (f"{total:,} frames recorded, {n_local:,} read; any start (stride 1): {anywhere:,.0f}/s; format 2: "
            f"windows {old:,.0f}/s, load_dataset + numpy {baseline:,.0f}/s")  # fmt: skip
    return [
        {"id": "R-read", "what": f"windows of {WINDOW} (stride {WINDOW}), random order, local format 3, {name} (frames/s)", "value": local,
         "fmt": "{:,.0f}", "target": ">= 20k", "ok": local >= 20_000, "note": note},
        {"id": "R-stream", "what": f"the same from the suite's Hub server, {name} (frames/s)", "value": stream,
         "fmt": "{:,.0f}", "target": ">= 5k", "ok": stream >= 5_000,
         "note": f"{n_stream:,} frames read; index shards downloaded, blocks by range"},
        {"id": "R-read", "what": f"load_dataset + every frame as numpy, format 2, {name} (frames/s)", "value": baseline,
         "fmt": "{:,.0f}", "target": "report", "ok": True, "note": f"{n_base:,} frames, the same episodes"},
    ]


def read_rows(scale: float = SMOKE_SCALE) -> list[dict[str, Any]]:
    """R-read and R-stream; ``scale`` shrinks recording and reading for a smoke run of the code."""
    from tests.hub import running_hub

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, running_hub("hf_bench_token", Path(tmp)) as hub:
        for name, (env_id, steps) in GAMES.items():
            work = Path(tmp) / name
            work.mkdir()
            rows += _game_rows(name, env_id, max(int(steps * scale), WINDOW + 1), work, hub,
                               max(int(READ_FRAMES * scale), WINDOW))  # fmt: skip
    return rows
