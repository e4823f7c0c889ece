"""The design card's shape, checked on the source and on a built wheel, not by convention.

The import graph (sibling processes over one shared floor, and the layers inside ``shared``) is
declared in pyproject.toml's ``[tool.importlinter]`` contracts and checked by ``lint-imports`` (run
here, by ``make lint`` and by ``make check``). This module keeps the house rules import-linter cannot
express; their few exceptions are named by file *and* function, never by a file name pattern.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRODUCT = ("shared", "recorder", "uploader", "replay", "export", "data")
# The CLI edge: the modules that read the environment, the user's home and the temp dir, and map any
# error to one line. Each is named; a new cli.py is not exempt until it is listed here.
CLI_EDGE = frozenset({"recorder/cli.py", "uploader/cli.py", "replay/cli.py", "export/cli.py", "shared/cli/edge.py",
                      "replay/view/cli.py", "recorder/web/cli.py"})
# The broad ``except``s below the CLI edge, by (file, function):
BROAD_ALLOWED = frozenset({
    ("uploader/daemon.py", "Uploader._process"),  # one bad episode must not stop the uploader daemon
    ("recorder/play_source.py", "_guarded.act"),  # a user's agent is foreign code: whatever it raises is its error
})
BROAD = frozenset({"Exception", "BaseException"})
# Reads of the machine's state that belong at the CLI edge (config in frozen dataclasses below it).
EDGE_ONLY_READS = frozenset({("os", "environ"), ("os", "getenv"), ("Path", "home"), ("tempfile", "gettempdir"),
                             ("os", "getcwd"), ("Path", "cwd")})
# ... and where one is still read below it, by (file, function):
EDGE_READS_ALLOWED: frozenset[tuple[str, str]] = frozenset({
    # A Ray actor is a process of its own on another machine: its __init__ is its edge, where it learns its
    # node's spool and temp dir once (recorder.cluster.actor.NodeEdge, frozen).
    ("recorder/cluster/actor.py", "RecordingActor.__init__"),
})


def product_files(package: str, root: Path = REPO) -> list[Path]:
    return sorted((root / package).rglob("*.py")) if (root / package).is_dir() else []


def all_product_files() -> list[Path]:
    return [path for package in PRODUCT for path in product_files(package)]


def below_the_cli() -> list[Path]:
    return [path for path in all_product_files() if str(path.relative_to(REPO)) not in CLI_EDGE]


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


def test_the_import_contracts_hold() -> None:
    """pyproject.toml's [tool.importlinter] contracts: the siblings, the layers of shared, the Hub clients."""
    ran = subprocess.run([str(BIN / "lint-imports"), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_the_product_imports_gymrec_absolutely_and_never_tests() -> None:
    offenders = {}
    for path in all_product_files():
        bad = sorted(m for m in imported_modules(path)
                     if m.startswith(".") or m.split(".")[0] in {*PRODUCT, "tests", "bench"})
        if bad:
            offenders[str(path.relative_to(REPO))] = bad
    assert offenders == {}


def test_tests_and_bench_use_the_namespace() -> None:
    offenders = {}
    for folder in ("tests", "bench"):
        for path in (REPO / folder).rglob("*.py"):
            bad = [m for m in imported_modules(path) if m.split(".")[0] in PRODUCT]
            if bad:
                offenders[str(path.relative_to(REPO))] = bad
    assert offenders == {}


def enclosing_functions(tree: ast.AST) -> dict[int, str]:
    """Line -> qualified name of the innermost enclosing function (``Sink.__init__``, ``_guarded.act``)."""
    owner: dict[int, str] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    for inner in ast.walk(child):
                        if hasattr(inner, "lineno"):
                            owner[inner.lineno] = name  # visited outside-in: the innermost name wins
                visit(child, name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return owner


def edge_reads(path: Path) -> list[tuple[int, str, str]]:
    """(line, function, what) of every ``os.environ``, ``os.getenv``, ``Path.home``, ``tempfile.gettempdir``,
    ``os.getcwd``, attribute or ``from`` import alike."""
    tree = ast.parse(path.read_text())
    owner = enclosing_functions(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            pairs = [(node.value.id, node.attr)]
        elif isinstance(node, ast.ImportFrom) and node.module:
            pairs = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        found += [(node.lineno, owner.get(node.lineno, "<module>"), ".".join(pair)) for pair in pairs
                  if pair in EDGE_ONLY_READS]
    return found


def test_no_environment_home_or_temp_dir_reads_below_the_cli() -> None:
    offenders = [f"{path.relative_to(REPO)}:{line} {what} in {func}()" for path in below_the_cli()
                 for line, func, what in edge_reads(path) if (str(path.relative_to(REPO)), func) not in EDGE_READS_ALLOWED]
    assert offenders == []


def test_the_checks_see_through_from_imports_and_nesting(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text("from os import environ\nimport tempfile\n\ndef outer():\n    def inner():\n"
                      "        try:\n            return tempfile.gettempdir()\n        except Exception:\n"
                      "            pass\n    return inner\n")
    assert edge_reads(sample) == [(1, "<module>", "os.environ"), (7, "outer.inner", "tempfile.gettempdir")]
    assert broad_handlers(sample) == [(8, "outer.inner")]


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
    owner = enclosing_functions(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler):
            names = node.type.elts if isinstance(node.type, ast.Tuple) else [node.type] if node.type else []
            if node.type is None or any(isinstance(n, ast.Name) and n.id in BROAD for n in names):
                found.append((node.lineno, owner.get(node.lineno, "<module>")))
    return sorted(found)


def test_broad_excepts_only_at_the_cli_edge_and_where_declared() -> None:
    offenders = [f"{path.relative_to(REPO)}:{line} in {func}()" for path in below_the_cli()
                 for line, func in broad_handlers(path) if (str(path.relative_to(REPO)), func) not in BROAD_ALLOWED]
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
             "print([n for n in ('shared', 'recorder', 'uploader', 'replay', 'data') if importlib.util.find_spec(n)])")
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=elsewhere, capture_output=True, text=True,
                         env=env)
    assert ran.returncode == 0, ran.stderr
    where, generic = ran.stdout.splitlines()
    assert where.startswith(site)
    assert generic == "[]"
    failed = subprocess.run([str(venv / "bin" / "python"), "-c", "import shared"], cwd=elsewhere, capture_output=True,
                            text=True, env=env)
    assert failed.returncode != 0 and "No module named 'shared'" in failed.stderr
