"""``python -m bench.report`` (``make docs``): render the performance and reliability tables into docs/.

Each table sits in its doc between two markers and is rendered from the committed results
(``bench.results``); everything outside the markers is written by hand. ``--check`` changes
nothing and exits 1 when a doc is out of date (``tests/test_docs_tables.py`` asserts the same).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from bench.results import BENCH_RESULTS, REPO, STRESS_RESULTS, read


class Table(NamedTuple):
    doc: Path
    results: Path
    begin: str
    end: str


BENCH = Table(REPO / "docs" / "performance.md", BENCH_RESULTS, "<!-- bench:begin -->", "<!-- bench:end -->")
STRESS = Table(REPO / "docs" / "reliability.md", STRESS_RESULTS, "<!-- stress:begin -->", "<!-- stress:end -->")


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _load(value: Any) -> str:
    """``[before, after]`` or ``[1, 5, 15 min]`` as numbers, or a carried-over note as it was written."""
    if isinstance(value, list):
        return "→".join(f"{x:.1f}" for x in value) if len(value) == 2 else " / ".join(f"{x:.1f}" for x in value)
    return _cell(value)


def _machine(info: Mapping[str, Any]) -> str:
    note = f"; {info['note']}" if info.get("note") else ""
    return f"{info['date']}, {info['cores']} cores ({info['cpu']}){note}"


def bench_table(results: Mapping[str, Any]) -> str:
    runs: Mapping[str, Mapping[str, Any]] = results.get("runs", {})
    letters = {key: chr(ord("a") + i) for i, key in enumerate(sorted(runs))}
    lines = ["| id | measure | value | target | met | load | run |", "|---|---|---|---|---|---|---|"]
    for r in results.get("rows", []):
        met = "yes" if r["met"] else "**no**"
        lines.append(f"| {r['id']} | {_cell(r['measure'])} | {_cell(r['value'])} | {_cell(r['target'])} | {met} "
                     f"| {_load(r['load'])} | {letters[r['run']]} |")
    lines.append("")
    lines += [f"- run **{letters[key]}**: {_machine(runs[key])}" for key in sorted(runs)]
    # What each row printed besides its value (the raw rates, the parts of a sum): one line per row.
    lines += ["", "Details:", ""]
    lines += [f"- {r['id']}, {_cell(r['measure'])}: {_cell(r['note'])}" for r in results.get("rows", []) if r["note"]]
    return "\n".join(lines)


def _figure(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def stress_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    lines = ["| suite | result | size | date | load (1 / 5 / 15 min) |", "|---|---|---|---|---|"]
    said: dict[str, list[str]] = {}  # a machine, or a note, with the suites it applies to
    for suite, rec in results.items():
        figures = ", ".join(f"{_figure(value)} {name}" for name, value in rec["figures"].items())
        lines.append(f"| {suite} | {_cell(figures)} | {_cell(rec['size'])} | {rec['date']} | {_load(rec['load'])} |")
        for what in (f"{rec['cores']} cores ({rec['cpu']})", rec.get("note", "")):
            if what:
                said.setdefault(what, []).append(suite)
    lines.append("")
    lines += [f"- {', '.join(suites)}: {what}" for what, suites in said.items()]
    return "\n".join(lines)


def rendered(table: Table, text: str) -> str:
    """``text`` with the part between the table's markers rendered afresh from its results file."""
    start, stop = text.find(table.begin), text.find(table.end)
    if start < 0 or stop < start:
        raise ValueError(f"{table.doc.name}: the markers {table.begin} ... {table.end} are missing")
    data = read(table.results)
    body = bench_table(data) if table is BENCH else stress_table(data)
    return f"{text[:start]}{table.begin}\n{body}\n{text[stop:]}"


def main(argv: list[str]) -> int:
    stale = []
    for table in (BENCH, STRESS):
        text = table.doc.read_text()
        new = rendered(table, text)
        if new == text:
            continue
        stale.append(str(table.doc.relative_to(REPO)))
        if "--check" not in argv:
            table.doc.write_text(new)
    if stale:
        print(("out of date: " if "--check" in argv else "rendered: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
