"""The docs' generated tables match the committed results, and the docs' links lead somewhere.

docs/performance.md and docs/reliability.md carry tables rendered by ``bench.report`` from
``bench/results.json`` and ``tests/stress_results.json``; a hand edit of either side alone fails
here, so a table cannot drift from its figures again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import report, results
from tests import stress_results

REPO = Path(__file__).resolve().parent.parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("table", [report.BENCH, report.STRESS], ids=["performance", "reliability"])
def test_committed_docs_equal_what_the_renderer_makes_of_the_committed_results(table: report.Table) -> None:
    text = table.doc.read_text()
    assert report.rendered(table, text) == text, f"run `make docs` and commit {table.doc.relative_to(REPO)}"
    assert text.count(table.begin) == text.count(table.end) == 1


def test_every_committed_row_names_a_run_with_its_machine_and_date() -> None:
    data = results.read(results.BENCH_RESULTS)
    assert data["rows"], "bench/results.json holds no rows"
    for row in data["rows"]:
        assert set(row) >= {"id", "measure", "value", "target", "met", "load", "run"}, row
        assert {"date", "cores", "cpu"} <= set(data["runs"][row["run"]]), row["run"]
    for suite, rec in results.read(results.STRESS_RESULTS).items():
        assert rec["figures"] and {"date", "cores", "cpu", "load", "size"} <= set(rec), suite


def _bench_row(ident: str, what: str, value: float, ok: bool = True) -> dict[str, object]:
    return {"id": ident, "what": what, "value": value, "fmt": "{:.2f}", "target": ">= 1", "ok": ok, "note": ""}


def test_a_partial_bench_run_replaces_only_the_rows_it_measured(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    first: dict[str, Any] = {"date": "2026-01-01 00:00 UTC", "cores": 2, "cpu": "A"}
    rows = [results.bench_row(_bench_row(i, f"m{i}", 1.0), first["date"], (0.5, 0.7)) for i in ("P11", "P2", "E1", "RW")]
    results.save_bench(path, first["date"], first, rows, full=True)
    assert [r["id"] for r in results.read(path)["rows"]] == ["P2", "P11", "E1", "RW"]

    second: dict[str, Any] = {"date": "2026-01-02 00:00 UTC", "cores": 2, "cpu": "A"}
    again = [results.bench_row(_bench_row("P2", "mP2", 0.5, ok=False), second["date"], (1.0, 1.2))]
    results.save_bench(path, second["date"], second, again, full=False)
    data = results.read(path)
    by_id = {r["id"]: r for r in data["rows"]}
    assert by_id["P2"]["value"] == "0.50" and by_id["P2"]["met"] is False and by_id["P2"]["run"] == second["date"]
    assert by_id["P11"]["run"] == first["date"] and set(data["runs"]) == {first["date"], second["date"]}
    table = report.bench_table(data)
    assert "| P2 | mP2 | 0.50 | >= 1 | **no** | 1.0→1.2 | b |" in table
    assert "- run **a**: 2026-01-01 00:00 UTC, 2 cores (A)" in table

    results.save_bench(path, second["date"], second, again, full=True)  # a full run: the old rows and run go
    assert set(results.read(path)["runs"]) == {second["date"]} and len(results.read(path)["rows"]) == 1


def test_a_stress_suite_records_only_when_make_stress_names_the_file(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stress.json"
    monkeypatch.delenv("GYMREC_STRESS_RESULTS", raising=False)
    stress_results.record("R9", "R9: 3 kills", {"kills": 3})
    assert not path.exists(), "make test (no GYMREC_STRESS_RESULTS) must not rewrite the committed figures"

    monkeypatch.setenv("GYMREC_STRESS_RESULTS", str(path))
    monkeypatch.setenv("GYMREC_STRESS", "1")
    stress_results.record("R9", "R9: 3 kills", {"kills": 3, "lost": 0})
    stress_results.record("R8", "R8: 1200 cuts", {"cuts": 1200})
    stress_results.record("R9", "R9: 4 kills", {"kills": 4, "lost": 0})
    data = json.loads(path.read_text())
    assert list(data) == ["R8", "R9"] and data["R9"]["figures"] == {"kills": 4, "lost": 0}
    assert data["R9"]["size"] == "make stress" and len(data["R9"]["load"]) == 3
    table = report.stress_table(data)
    assert "| R8 | 1,200 cuts | make stress |" in table and "| R9 | 4 kills, 0 lost | make stress |" in table


def test_rendering_refuses_a_doc_without_its_markers() -> None:
    with pytest.raises(ValueError, match="markers"):
        report.rendered(report.BENCH, "# Performance\n\nno table here\n")


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+ (.+)$", re.sub(r"```.*?```", "", path.read_text(), flags=re.S), flags=re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=[p.name for p in DOCS])
def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading(doc: Path) -> None:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue  # a web address
        name, _, anchor = target.partition("#")
        path = (doc.parent / name).resolve() if name else doc
        if not path.exists() or (anchor and path.suffix == ".md" and anchor not in _anchors(path)):
            broken.append(target)
    assert broken == [], f"{doc.relative_to(REPO)}: broken links {broken}"
