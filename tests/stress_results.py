"""The reliability suites' one way to print their summary and keep their figures for the docs.

``make stress`` sets ``GYMREC_STRESS_RESULTS`` to ``tests/stress_results.json``; each suite then
stores its figures there (``bench.results.save_suite``: machine, date, load), and
docs/reliability.md is rendered from that file. ``make test`` and a hand-run pytest set nothing, so
they never rewrite the committed figures. Call ``record`` after the suite's asserts: only figures a
passing run proved are kept.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bench.results import Figure, save_suite


def record(suite: str, summary: str, figures: Mapping[str, Figure]) -> None:
    target = os.environ.get("GYMREC_STRESS_RESULTS", "")
    if not target:
        return
    size = "make stress" if os.environ.get("GYMREC_STRESS", "") == "1" else "make test size"
    save_suite(Path(target), suite, figures, summary, size)
