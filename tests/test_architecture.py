"""The dependency direction of the design card, checked on the source, not by convention."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def imported_roots(package: str) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in (REPO / package).rglob("*.py"):
        roots: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = roots
    return found


@pytest.mark.parametrize(("package", "forbidden"), [
    ("shared", {"recorder", "uploader", "replay", "datasets", "huggingface_hub"}),
    ("recorder", {"uploader", "replay", "datasets", "huggingface_hub"}),
])
def test_dependency_direction(package: str, forbidden: set[str]) -> None:
    offenders = {path: sorted(roots & forbidden) for path, roots in imported_roots(package).items() if roots & forbidden}
    assert offenders == {}


def test_no_module_level_environment_reads_below_the_cli() -> None:
    offenders = []
    for package in ("shared", "recorder", "uploader", "replay"):
        for path in (REPO / package).rglob("*.py"):
            if path.name in ("cli.py", "cli_errors.py", "__main__.py") or "bench" in path.name:
                continue
            if "os.environ" in path.read_text() or "os.getenv" in path.read_text():
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
