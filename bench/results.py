"""The committed results of ``make bench`` and ``make stress``: figures with the machine, date and load.

Timings on a shared 2-core machine mean little without saying how busy it was, so every figure
is stored with the machine (cores, CPU model), the date and the load average around it. The docs'
tables are rendered from these files (``bench.report``), never typed by hand.

- ``bench/results.json``: ``{"runs": {key: machine and date}, "rows": [row, ...]}``. A row is one
  line of the bench table (id, measure, value, target, met, load, note) and names its run. A full
  ``make bench`` replaces every row; ``make bench ARGS=P1`` replaces the rows it measured again.
- ``tests/stress_results.json``: ``{suite: record}``, one record per reliability suite (its
  figures, the summary line it printed, machine, date and load), replaced whenever it runs again.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
BENCH_RESULTS = REPO / "bench" / "results.json"
STRESS_RESULTS = REPO / "tests" / "stress_results.json"

Figure = int | float | str


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> dict[str, Any]:
    """What a figure was measured on, and when (no host name: results are committed)."""
    now = datetime.datetime.now(datetime.UTC)
    return {"date": now.strftime("%Y-%m-%d %H:%M UTC"), "cores": os.cpu_count(), "cpu": cpu_model()}


def load() -> float:
    """The 1-minute load average, rounded as the tables show it."""
    return round(os.getloadavg()[0], 1)


def read(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write(path: Path, data: Mapping[str, Any]) -> None:
    # A temp file and a rename: an interrupted run leaves the old results, never half a file.
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    tmp.replace(path)


def bench_row(row: Mapping[str, Any], run: str, load_range: tuple[float, float]) -> dict[str, Any]:
    """One stored row from what a bench suite returned (``id``, ``what``, ``value``, ``fmt``, ...)."""
    value = row["value"]
    shown = row["fmt"].format(value) if isinstance(value, int | float) else str(value)
    return {"id": row["id"], "measure": row["what"], "value": shown, "target": row["target"], "met": bool(row["ok"]),
            "load": list(load_range), "run": run, "note": row.get("note", "")}


def save_bench(path: Path, run: str, info: Mapping[str, Any], rows: Iterable[Mapping[str, Any]], full: bool) -> None:
    """Store one bench run: all rows when ``full``, else its rows replace those with the same id and measure."""
    old = read(path)
    new = list(rows)
    measured = {(r["id"], r["measure"]) for r in new}
    kept = [] if full else [r for r in old.get("rows", []) if (r["id"], r["measure"]) not in measured]
    merged = kept + new
    used = {r["run"] for r in merged}
    runs = {k: v for k, v in {**old.get("runs", {}), run: dict(info)}.items() if k in used}
    _write(path, {"runs": runs, "rows": sorted(merged, key=row_order)})


def row_order(row: Mapping[str, Any]) -> tuple[int, str, int]:
    """P rows, E rows, then the rest; by number within (``P11`` after ``P9``). Rows of one id keep
    the order they were measured in."""
    ident = row["id"]
    letters = ident.rstrip("0123456789")
    return {"P": 0, "E": 1}.get(letters, 2), letters, int(ident[len(letters):] or 0)


def save_suite(path: Path, suite: str, figures: Mapping[str, Figure], summary: str, size: str) -> None:
    """Store one reliability suite's figures (replacing its last record), with machine, date and load."""
    data = read(path)
    one, five, fifteen = os.getloadavg()
    data[suite] = {"figures": dict(figures), "size": size, "summary": summary, **machine(),
                   "load": [round(one, 1), round(five, 1), round(fifteen, 1)]}
    _write(path, dict(sorted(data.items())))
