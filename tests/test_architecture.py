"""The design card's shape, checked on the source and on a built wheel, not by convention.

The import graph is sibling processes over one shared floor::

                 gymrec.export ──────────┐ (reads recordings through replay's sources)
                                         v
    gymrec.recorder     gymrec.uploader     gymrec.replay
           │  ^   ^            │                  │
           │  └───┼── recovery ┘ ─────────────────┘   (the one allowed cross-import:
           │      └──────────────────────────────┘     gymrec.recorder.recovery)
           v                  v                  v
                          gymrec.shared   (schemas, keymaps, backends, errors, dataset layout)

Only the uploader and replay import ``datasets`` / ``huggingface_hub``; nothing in the product imports
``tests`` or ``bench``. Every rule applies to every file, with no exemptions by name.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("shared", "recorder", "uploader", "replay", "export")
HUB_CLIENTS = frozenset({"datasets", "huggingface_hub"})
RECOVERY_ENTRY = "gymrec.recorder.recovery"
CLI_EDGE = frozenset({"cli.py", "cli_errors.py", "__main__.py"})
# The one broad ``except`` below the CLI edge: one bad episode must not stop the uploader daemon.
EPISODE_LOOPS = frozenset({("uploader/daemon.py", "_process")})
BROAD = frozenset({"Exception", "BaseException"})


@dataclass(frozen=True)
class Rule:
    package: str
    forbidden_roots: frozenset[str]  # top-level import names (datasets, tests, ...)
    forbidden_siblings: frozenset[str]  # gymrec.<sibling>
    allowed_modules: frozenset[str] = frozenset()  # exact gymrec.* modules allowed despite the above


RULES = (
    Rule("shared", frozenset(HUB_CLIENTS | {"tests", "bench"}),
         frozenset({"recorder", "uploader", "replay", "export"})),
    Rule("recorder", frozenset(HUB_CLIENTS | {"tests", "bench"}), frozenset({"uploader", "replay", "export"})),
    Rule("uploader", frozenset({"tests", "bench"}), frozenset({"recorder", "replay", "export"}),
         frozenset({RECOVERY_ENTRY})),
    Rule("replay", frozenset({"tests", "bench"}), frozenset({"recorder", "uploader", "export"}),
         frozenset({RECOVERY_ENTRY})),
    Rule("export", frozenset(HUB_CLIENTS | {"tests", "bench"}), frozenset({"recorder", "uploader"})),
)


def product_files(package: str, root: Path = REPO) -> list[Path]:
    return sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []


def all_product_files() -> list[Path]:
    return [path for package in PRODUCT for path in product_files(package)]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (``from a.b import c`` gives ``a.b`` and ``a.b.c``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.add("." * node.level + (node.module or ""))  # relative: reported by the product check
    return found


def violations(rule: Rule, root: Path = REPO) -> dict[str, list[str]]:
    offenders: dict[str, list[str]] = {}
    for path in product_files(rule.package, root):
        modules = imported_modules(path)
        bad = []
        for module in sorted(modules):
            parts = module.split(".")
            if module.startswith("."):
                bad.append(f"{module} (relative: use absolute gymrec.* imports)")
            elif parts[0] in rule.forbidden_roots:
                bad.append(module)
            elif parts[0] in PRODUCT:
                bad.append(f"{module} (import it as gymrec.{module})")
            elif parts[0] == "gymrec" and len(parts) > 1 and parts[1] in rule.forbidden_siblings:
                # ``from gymrec.recorder import recovery`` names both gymrec.recorder and its recovery module.
                allowed = any(module == m or module.startswith(m + ".") or (m.startswith(module + ".") and m in modules)
                              for m in rule.allowed_modules)
                if not allowed:
                    bad.append(module)
        if bad:
            offenders[str(path.relative_to(root))] = bad
    return offenders


@pytest.mark.parametrize("rule", RULES, ids=[rule.package for rule in RULES])
def test_dependency_direction(rule: Rule) -> None:
    assert violations(rule) == {}


def test_the_rules_catch_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: a forbidden cross-import is reported, the recovery entry point is not."""
    (tmp_path / "uploader").mkdir()
    (tmp_path / "uploader" / "bad.py").write_text(
        "from gymrec.replay import verify\nfrom gymrec.recorder.recovery import recover_orphans\n"
        "from gymrec.recorder import session\nimport datasets\n")
    rule = Rule("uploader", frozenset({"tests"}), frozenset({"recorder", "replay"}), frozenset({RECOVERY_ENTRY}))
    assert violations(rule, tmp_path) == {
        "uploader/bad.py": ["gymrec.recorder.session", "gymrec.replay", "gymrec.replay.verify"]}


def test_tests_and_bench_use_the_namespace() -> None:
    offenders = {}
    for folder in ("tests", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            bad = [m for m in imported_modules(path) if m.split(".")[0] in PRODUCT]
            if bad:
                offenders[str(path.relative_to(REPO))] = bad
    assert offenders == {}


def test_no_environment_reads_below_the_cli() -> None:
    offenders = [str(path.relative_to(REPO)) for path in all_product_files()
                 if path.name not in CLI_EDGE and ("os.environ" in path.read_text() or "os.getenv" in path.read_text())]
    assert offenders == []


def test_no_global_statements() -> None:
    offenders = [f"{path.relative_to(REPO)}:{node.lineno}" for path in all_product_files()
                 for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Global | ast.Nonlocal)]
    assert offenders == []


MUTABLE_CALLS = frozenset({"list", "dict", "set", "defaultdict", "Counter", "OrderedDict", "deque", "bytearray"})
MUTABLE_NODES = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def _is_mutable(value: ast.expr | None) -> bool:
    if isinstance(value, MUTABLE_NODES):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        return name in MUTABLE_CALLS
    return False


def test_no_module_level_mutable_containers() -> None:
    """Module state is constants: tuples, frozensets, MappingProxyType; ``__all__`` is the one list."""
    offenders = []
    for path in [*all_product_files(), *sorted((REPO / "bench").rglob("*.py")), Path(__file__)]:
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Assign | ast.AnnAssign) and _is_mutable(node.value):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                if [ast.unparse(t) for t in targets] != ["__all__"]:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert offenders == []


def broad_handlers(path: Path) -> list[tuple[int, str]]:
    """(line, innermost enclosing function) of every ``except:``, ``except Exception`` or ``except BaseException``."""
    tree = ast.parse(path.read_text())
    owner: dict[int, str] = {}
    # ast.walk is breadth-first, so a nested function is visited after its parent and its name wins.
    for scope in ast.walk(tree):
        if isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
            for node in ast.walk(scope):
                if isinstance(node, ast.ExceptHandler):
                    owner[node.lineno] = scope.name
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type] if node.type else []
            if node.type is None or any(isinstance(n, ast.Name) and n.id in BROAD for n in names):
                found.append((node.lineno, owner.get(node.lineno, "<module>")))
    return sorted(found)


def test_broad_excepts_only_at_the_cli_edge_and_the_uploaders_episode_loop() -> None:
    offenders = [f"{path.relative_to(REPO)}:{line} in {func}()" for path in all_product_files()
                 if path.name not in CLI_EDGE for line, func in broad_handlers(path)
                 if (str(path.relative_to(REPO)), func) not in EPISODE_LOOPS]
    assert offenders == []


@pytest.mark.slow
def test_the_wheel_installs_one_gymrec_namespace(tmp_path: Path) -> None:
    """Built and installed outside the repo: ``import gymrec.shared`` works and ``import shared`` fails."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in PRODUCT:
        if (REPO / package).is_dir():
            shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, env=env)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("gymrec-*.whl")
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"gymrec"}
    assert "gymrec/shared/keymaps/atari.toml" in zipfile.ZipFile(wheel).namelist()

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", site,
                                str(wheel)], capture_output=True, text=True, env=env)
    assert installed.returncode == 0, installed.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = ("import importlib.util, gymrec.shared; "
             "print(gymrec.shared.__file__); "
             "print([n for n in ('shared', 'recorder', 'uploader', 'replay') if importlib.util.find_spec(n)])")
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=elsewhere, capture_output=True, text=True,
                         env=env)
    assert ran.returncode == 0, ran.stderr
    where, generic = ran.stdout.splitlines()
    assert where.startswith(site)
    assert generic == "[]"
    failed = subprocess.run([str(venv / "bin" / "python"), "-c", "import shared"], cwd=elsewhere, capture_output=True,
                            text=True, env=env)
    assert failed.returncode != 0 and "No module named 'shared'" in failed.stderr
