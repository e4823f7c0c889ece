"""Uploader measurements: P4 (dataset bytes/frame, conversion speed), P6 (RSS), P7 (seal -> visible)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from gymrec.uploader import bench as ub


def rows() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        ub.record_breakout(spool, 5_000, seed=1, serve=True)
        p4 = ub.bench_p4(spool)
        out.append({"id": "P4", "what": "dataset bytes per frame (Breakout random play)", "value": p4["bytes_per_frame"],
                    "fmt": "{:.0f}", "target": "<= 193", "ok": p4["bytes_per_frame"] <= 193,
                    "note": f"{p4['frames']:,} frames in {p4['episodes']} games, all files"})
        out.append({"id": "P4", "what": "conversion frames/s", "value": p4["frames_per_s"], "fmt": "{:,.0f}",
                    "target": ">= 1000", "ok": p4["frames_per_s"] >= 1000, "note": "lossless WebP, parallel workers"})
        p6 = ub.bench_p6(Path(tmp) / "long")
        out.append({"id": "P6", "what": "uploader peak RSS converting a 100k-frame episode (MB)", "value": p6,
                    "fmt": "{:.0f}", "target": "< 500", "ok": p6 < 500, "note": "fresh process, includes imports"})
        p7 = ub.bench_p7(Path(tmp) / "p7")
        out.append({"id": "P7", "what": "sealed -> commit visible, 5k-frame episode (s)", "value": p7, "fmt": "{:.1f}",
                    "target": "< 10", "ok": p7 < 10, "note": "local Hub-compatible server"})
    return out
