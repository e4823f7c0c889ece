"""``make bench``: measure the targets from the issues and print one table.

Usage: ``python -m bench [ID ...]`` (e.g. ``python -m bench P1 P3``); no IDs runs everything.
Exits 1 when any row misses its target. ``P2`` runs the dummy-driver loop and the real X window
(``P2X`` alone: the window only, which needs Xvfb and xdotool).

The rows are also stored in ``bench/results.json`` with the machine, the date and each suite's load
before and after (``bench.results``), and the table in docs/performance.md is rendered from them
(``bench.report``). A run of some IDs replaces only the rows it measured again.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

from bench import cli_bench, recorder_bench, report, results  # noqa: E402

Row = dict[str, Any]


def uploader_rows() -> list[Row]:
    from bench import uploader_bench

    return uploader_bench.rows()


def p6_rows() -> list[Row]:
    """The recorder's half records the moving session the uploader daemon's half then uploads."""
    import tempfile
    from pathlib import Path

    from bench import daemon_bench

    with tempfile.TemporaryDirectory() as tmp:
        spool = Path(tmp) / "spool"
        return recorder_bench.p6_recorder(spool) + daemon_bench.p6_uploader(spool, Path(tmp))


def p7_rows() -> list[Row]:
    from bench import daemon_bench

    return daemon_bench.p7()


def p2_window_rows() -> list[Row]:
    from bench import window_bench

    return window_bench.p2_window()


def scale_rows() -> list[Row]:
    from bench import scale_bench

    return scale_bench.scale_rows()


def rewind_rows() -> list[Row]:
    from bench import rewind_bench

    return rewind_bench.rows()


def p12_rows() -> list[Row]:
    from bench import ray_bench

    return ray_bench.p12()


def export_rows() -> list[Row]:
    from bench import export_bench

    return export_bench.rows()


def p13_rows() -> list[Row]:
    from bench import serve_bench

    return serve_bench.p13()


def read_rows() -> list[Row]:
    from bench import read_bench

    return read_bench.read_rows()


SUITES: Mapping[str, Callable[[], list[Row]]] = MappingProxyType({
    "P1": cli_bench.p1_p5,
    "P3": recorder_bench.p3,
    "P2": recorder_bench.p2,
    "P2X": p2_window_rows,
    "P11": cli_bench.p11,
    "P12": p12_rows,
    "P6": p6_rows,
    "P4": uploader_rows,
    "P7": p7_rows,
    "P8": scale_rows,
    "E1": export_rows,
    "RW": rewind_rows,
    "P13": p13_rows,
    "R-READ": read_rows,
})
# P5 comes with P1 (it replays P1's recording); P9 and the read speed with P8; E2/E3 (video) with E1.
# P2X is P2 in a real X window (Xvfb); ``P2`` runs both.
ALIASES: Mapping[str, str] = MappingProxyType({"R-STREAM": "R-READ", "P5": "P1", "P9": "P8", "READ": "P8", "E2": "E1", "E3": "E1"})
WITH: Mapping[str, tuple[str, ...]] = MappingProxyType({"P2": ("P2", "P2X")})


def _suites(argv: list[str]) -> list[str]:
    out: list[str] = []
    for arg in argv:
        key = ALIASES.get(arg.upper(), arg.upper())
        out += WITH.get(key, (key,))
    return out or list(SUITES)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    wanted = _suites(argv)
    run = results.machine()
    load_start = os.getloadavg()[0]
    rows: list[Row] = []
    stored: list[dict[str, Any]] = []
    broken: list[str] = []
    for key in dict.fromkeys(wanted):
        start, before = time.perf_counter(), results.load()
        print(f"running {key} ...", file=sys.stderr, flush=True)
        try:
            measured = SUITES[key]()
        except Exception:  # one broken suite must not throw away the others' minutes of timing
            logging.exception("suite %s failed; its rows keep their last values", key)
            broken.append(key)
            continue
        # Shared machines make timings noisy: each row keeps how busy this one was around its suite.
        stored += [results.bench_row(r, run["date"], (before, results.load())) for r in measured]
        rows += measured
        print(f"  {key} took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rows.sort(key=results.row_order)
    print(f"{os.cpu_count()} cores, load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"{'id':<4} {'measure':<58} {'value':>10} {'target':>8}  ok    note")
    for r in rows:
        value = r["fmt"].format(r["value"]) if isinstance(r["value"], int | float) else str(r["value"])
        print(f"{r['id']:<4} {r['what']:<58} {value:>10} {r['target']:>8}  {'yes' if r['ok'] else 'NO ':<4}  {r['note']}")
    results.save_bench(results.BENCH_RESULTS, run["date"], run, stored, full=set(wanted) >= set(SUITES) and not broken)
    report.main([])
    if broken:
        print(f"failed suites (see above): {' '.join(broken)}", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) and not broken else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
