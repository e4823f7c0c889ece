"""``make bench``: measure the targets from the issues and print one table.

Usage: ``python -m bench [ID ...]`` (e.g. ``python -m bench P1 P3``); no IDs runs everything.
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

from bench import cli_bench, recorder_bench  # noqa: E402

Row = dict[str, Any]


def uploader_rows() -> list[Row]:
    from bench import uploader_bench

    return uploader_bench.rows()


def rewind_rows() -> list[Row]:
    from bench import rewind_bench

    return rewind_bench.rows()


def export_rows() -> list[Row]:
    from bench import export_bench

    return export_bench.rows()


SUITES: Mapping[str, Callable[[], list[Row]]] = MappingProxyType({
    "P1": cli_bench.p1_p5,
    "P3": recorder_bench.p3,
    "P2": recorder_bench.p2,
    "P11": cli_bench.p11,
    "P6": recorder_bench.p6_recorder,
    "P4": uploader_rows,
    "E1": export_rows,
    "R1": rewind_rows,
})
# P5 comes with P1 (it replays P1's recording); P7 and the uploader's P6 come with P4; E2/E3 (video) with E1.
ALIASES: Mapping[str, str] = MappingProxyType({"P5": "P1", "P7": "P4", "E2": "E1", "E3": "E1"})


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.WARNING)
    wanted = [ALIASES.get(a.upper(), a.upper()) for a in argv] or list(SUITES)
    rows: list[Row] = []
    for key in dict.fromkeys(wanted):
        start = time.perf_counter()
        print(f"running {key} ...", file=sys.stderr, flush=True)
        rows += SUITES[key]()
        print(f"  {key} took {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    rows.sort(key=lambda r: (r["id"][0], int(r["id"][1:])))
    print(f"{'id':<4} {'measure':<58} {'value':>10} {'target':>8}  ok    note")
    for r in rows:
        value = r["fmt"].format(r["value"]) if isinstance(r["value"], int | float) else str(r["value"])
        print(f"{r['id']:<4} {r['what']:<58} {value:>10} {r['target']:>8}  {'yes' if r['ok'] else 'NO ':<4}  {r['note']}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
