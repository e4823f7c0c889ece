#!/usr/bin/env python3
"""The package split of issue 20 (phase 2), done mechanically: run it from the repository root.

    python tools/relayer.py            # move, rewrite, update pyproject, sort imports
    python tools/relayer.py --dry-run  # say what it would move and which files it would rewrite

What it does, in order, each step a no-op when already done (so it can run again on a tree where
others added files that still use the old import paths):

1. ``git mv`` every module of ``MOVES`` to its sub-package (``shared/spool``, ``shared/envs``,
   ``shared/keymaps``, ``shared/hub``, ``shared/cli``, ``shared/dataset``) and gives each new package
   an ``__init__.py``. The recorder's write side and recovery, and replay's read side, move into
   ``shared`` so that recorder, uploader, replay and export import no sibling at all.
2. Rewrites every reference to a moved module in the product, tests, bench, tools and the Markdown
   files: import statements through the AST (``from gymrec.shared import layout, schema`` is split by
   target package), dotted names anywhere (``"gymrec.recorder.writer_process"`` in a ``-m`` command
   line), and in comments, docstrings and Markdown the short forms (``recorder.writer``) and the file
   paths (``shared/attrs.py``).
3. Rewrites pyproject.toml: the package list and the ``[tool.importlinter]`` contracts, which lose
   phase 1's exceptions (the recovery and read-side cross-imports).
4. Sorts the rewritten imports with ruff (``ruff check --select I --fix``) when ``.venv`` has it.

Then: ``make check`` (which re-installs, as pyproject changed) and ``make lint``. If ``lint-imports``
reports ``gymrec.shared.X -> gymrec.<program>.Y``, a module the moved ones need was added after this
table was written: add ``Y`` to ``MOVES`` (next to what imports it) and run the script again.

``gymrec.shared.spool`` is both an old module (the spool directory) and the new package. An import
``from gymrec.shared.spool import X`` keeps its meaning when ``X`` is one of the package's modules and
otherwise goes to ``gymrec.shared.spool.directory`` (the old module's new name).
"""

from __future__ import annotations

import argparse
import ast
import io
import re
import shutil
import subprocess
import sys
import tokenize
from collections.abc import Callable, Iterable
from pathlib import Path
from types import MappingProxyType

# old module -> new module, both relative to ``gymrec.`` (their files: <package dir>/<name>.py).
MOVES = MappingProxyType({
    # The spool: its format, its read side, its write side and recovery. Everyone stands on it.
    "shared.schema": "shared.spool.schema",
    "shared.chunks": "shared.spool.chunks",
    "shared.checksums": "shared.spool.checksums",
    "shared.episode": "shared.spool.episode",
    "shared.attrs": "shared.spool.attrs",
    "shared.spool": "shared.spool.directory",
    "shared.fsio": "shared.spool.fsio",
    "shared.spaces": "shared.spool.spaces",
    "recorder.writer": "shared.spool.writer",
    "recorder.journal": "shared.spool.journal",
    "recorder.chunk_store": "shared.spool.chunk_store",
    "recorder.zarr_layout": "shared.spool.zarr_layout",
    "recorder.buffers": "shared.spool.buffers",
    "recorder.sinks": "shared.spool.sinks",
    "recorder.writer_process": "shared.spool.writer_process",
    "recorder.salvage": "shared.spool.salvage",
    "recorder.recovery": "shared.spool.recovery",
    "replay.sources": "shared.spool.sources",
    # Env backends.
    "shared.backends": "shared.envs.backends",
    "shared.env_backend": "shared.envs.base",
    "shared.ale_backend": "shared.envs.ale",
    "shared.vizdoom_backend": "shared.envs.vizdoom",
    "shared.retro_backend": "shared.envs.retro",
    "shared.ale_start": "shared.envs.ale_start",
    "shared.starters": "shared.envs.starters",
    # Keymaps (the builtin TOML files are already in shared/keymaps/).
    "shared.keymap": "shared.keymaps.keymap",
    "shared.keymap_parse": "shared.keymaps.keymap_parse",
    "shared.bindings": "shared.keymaps.bindings",
    "shared.action_resolver": "shared.keymaps.action_resolver",
    "shared.resolvers": "shared.keymaps.resolvers",
    # huggingface_hub in one place.
    "shared.hub_client": "shared.hub.client",
    "shared.hub_translate": "shared.hub.translate",
    "shared.credentials": "shared.hub.credentials",
    # The CLI edge's plumbing.
    "shared.cli_errors": "shared.cli.edge",
    "shared.paths": "shared.cli.paths",
    "shared.progress": "shared.cli.progress",
    "shared.display": "shared.cli.display",
    # Datasets: the layout contract, the reader (local or Hub), choosing between spool and dataset.
    "shared.layout": "shared.dataset.layout",
    "replay.dataset": "shared.dataset.reader",
    "replay.dataset_index": "shared.dataset.index",
    "replay.select": "shared.dataset.select",
    "replay.hub_words": "shared.dataset.hub_words",  # the reader's Hub calls, with the way out it tells
})
NEW_PACKAGES = MappingProxyType({
    "shared.spool": "The spool: the episode format, reading it, writing it crash-safely, and recovering orphans.",
    "shared.envs": "Env backends: which package owns an env id, making the env, and starting its episodes.",
    "shared.keymaps": "Keymaps: the builtin TOML files, parsing them, and resolving keys to env actions.",
    "shared.hub": "The Hugging Face Hub: the client's errors translated, credentials, the HTTP timeout.",
    "shared.cli": "The CLI edge's plumbing: one-line errors and exit codes, default paths, progress, display.",
    "shared.dataset": "Datasets: the layout contract, reading one (local or on the Hub), choosing a source.",
})
PRODUCT = ("shared", "recorder", "uploader", "replay", "export")
STAYS_IN_SHARED = frozenset({"__init__", "errors", "zstd_frames"})  # the bottom layer, beneath every sub-package
SCANNED = (*PRODUCT, "tests", "bench", "tools")
OLD_PACKAGES = frozenset(old.split(".")[0] for old in MOVES)
AMBIGUOUS = "shared.spool"  # an old module and a new package
SPOOL_MODULES = frozenset(new.rsplit(".", 1)[1] for new in MOVES.values() if new.startswith(AMBIGUOUS + "."))
SELF = Path(__file__).resolve()
# This script's own MOVES and docs/development.md (which describes the split layout) stay as written.
NOT_REWRITTEN = frozenset({"tools/relayer.py", "docs/development.md"})

PACKAGES_LINE = re.compile(r"^packages = \[.*?\]\n", re.S | re.M)
IMPORTLINTER = re.compile(r"^# The layers, checked by `lint-imports`.*?(?=^\[(?!\[?tool\.importlinter)|\Z)", re.S | re.M)
IMPORTLINTER_TOML = '''# The layers, checked by `lint-imports` (make lint, make check). Lazy and TYPE_CHECKING imports count too.
[tool.importlinter]
# gymrec is a PEP 420 namespace (no gymrec/__init__.py) whose editable install grimp cannot walk: name its packages.
root_packages = ["gymrec.shared", "gymrec.recorder", "gymrec.uploader", "gymrec.replay", "gymrec.export"]
include_external_packages = true  # for the forbidden contracts on datasets / huggingface_hub

[[tool.importlinter.contracts]]
name = "recorder, uploader, replay and export are sibling processes over shared, importing no sibling"
type = "layers"
layers = [
    "gymrec.recorder | gymrec.uploader | gymrec.replay | gymrec.export",
    "gymrec.shared",
]

[[tool.importlinter.contracts]]
name = "shared: keymaps, CLI, datasets over the Hub over the spool over env backends over errors"
type = "layers"
layers = [
    "gymrec.shared.keymaps | gymrec.shared.cli | gymrec.shared.dataset",
    "gymrec.shared.hub",
    "gymrec.shared.spool",
    "gymrec.shared.envs",
    "gymrec.shared.errors | gymrec.shared.zstd_frames",
]

[[tool.importlinter.contracts]]
name = "the recorder and the spool, env, keymap and CLI layers never load the Hub clients, even indirectly"
type = "forbidden"
source_modules = ["gymrec.recorder", "gymrec.shared.spool", "gymrec.shared.envs", "gymrec.shared.keymaps",
                  "gymrec.shared.cli"]
forbidden_modules = ["datasets", "huggingface_hub"]

[[tool.importlinter.contracts]]
name = "export imports no Hub client itself (it reads Hub datasets through shared.dataset)"
type = "forbidden"
source_modules = ["gymrec.export"]
forbidden_modules = ["datasets", "huggingface_hub"]
allow_indirect_imports = true

'''


def path_of(module: str) -> Path:
    return Path(*module.split(".")).with_suffix(".py")


# --- 1. moving files ----------------------------------------------------------------------------


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def tracked(path: Path) -> bool:
    return git("ls-files", "--error-unmatch", str(path)).returncode == 0


def move_files(dry_run: bool, use_git: bool) -> list[str]:
    done = []
    for package, doc in NEW_PACKAGES.items():
        init = path_of(package).with_suffix("") / "__init__.py"
        if not init.exists():
            done.append(f"create {init}")
            if not dry_run:
                init.parent.mkdir(parents=True, exist_ok=True)
                init.write_text(f'"""{doc}"""\n')
                if use_git:
                    git("add", str(init))
    for old, new in MOVES.items():
        src, dst = path_of(old), path_of(new)
        if not src.exists():
            if not dst.exists():
                sys.exit(f"relayer: neither {src} nor {dst} exists: MOVES is out of date with the tree")
            continue  # moved already
        if dst.exists():
            sys.exit(f"relayer: both {src} and {dst} exist: merge them by hand, then run again")
        done.append(f"move {src} -> {dst}")
        if dry_run:
            continue
        if use_git and tracked(src):
            moved = git("mv", str(src), str(dst))
            if moved.returncode != 0:
                sys.exit(f"relayer: git mv {src} {dst} failed: {moved.stderr.strip()}")
        else:
            shutil.move(src, dst)
    return done


# --- 2. rewriting references ---------------------------------------------------------------------


def new_name(rel: str) -> str | None:
    """The new module for an old one (``rel`` without ``gymrec.``), or None when it did not move."""
    return MOVES.get(rel)


def resolve_dotted(rel: str, rest: str) -> str | None:
    """``gymrec.<rel><rest>`` with ``rel`` = ``pkg.name`` and ``rest`` = ``.more`` or ""; None: unchanged."""
    if rel == AMBIGUOUS:
        head = rest[1:].split(".", 1)[0] if rest else ""
        if head in SPOOL_MODULES:
            return None  # already the package's module
    target = new_name(rel)
    return None if target is None else target + rest


def _split_from(module: str, names: list[ast.alias]) -> list[tuple[str, list[str]]] | None:
    """``from module import names`` as (module, ["a", "b as c"]) groups; None when nothing moves."""
    rel = module.removeprefix("gymrec.")
    groups: dict[str, list[str]] = {}
    changed = False
    for alias in names:
        bound = alias.asname or alias.name
        target_module, imported = module, alias.name
        if rel in OLD_PACKAGES and f"{rel}.{alias.name}" in MOVES:  # from gymrec.shared import schema
            parent, base = ("gymrec." + MOVES[f"{rel}.{alias.name}"]).rsplit(".", 1)
            target_module, imported = parent, base
        elif rel == AMBIGUOUS:
            if alias.name not in SPOOL_MODULES and alias.name != "*":
                target_module = "gymrec." + MOVES[AMBIGUOUS]
        elif new_name(rel) is not None:
            target_module = "gymrec." + MOVES[rel]
        changed |= target_module != module or imported != alias.name
        groups.setdefault(target_module, []).append(imported if imported == bound else f"{imported} as {bound}")
    return list(groups.items()) if changed else None


def _format_from(module: str, names: list[str], indent: str) -> str:
    line = f"{indent}from {module} import {', '.join(names)}"
    if len(line) <= 110:
        return line
    body = "".join(f"{indent}    {name},\n" for name in names)
    return f"{indent}from {module} import (\n{body}{indent})"


def _rewrite_import(node: ast.stmt, indent: str) -> str | None:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("gymrec."):
        groups = _split_from(node.module, node.names)
        if groups is None:
            return None
        return "\n".join(_format_from(module, names, indent) for module, names in groups)
    if isinstance(node, ast.Import):
        parts, changed = [], False
        for alias in node.names:
            name = alias.name
            if name.startswith("gymrec.") and name.count(".") >= 2:
                _, package, module, *rest = name.split(".")
                moved = resolve_dotted(f"{package}.{module}", "".join(f".{r}" for r in rest))
                if moved is not None:
                    name, changed = "gymrec." + moved, True
            parts.append(name if alias.asname is None else f"{name} as {alias.asname}")
        return f"{indent}import {', '.join(parts)}" if changed else None
    return None


def rewrite_imports(text: str, where: str) -> str:
    """Import statements naming a moved module, rebuilt through the AST (their comments kept above them)."""
    try:
        tree = ast.parse(text, where)
    except SyntaxError as e:
        sys.exit(f"relayer: cannot parse {where}: {e}")
    lines = text.splitlines(keepends=True)
    edits = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Import | ast.ImportFrom):
            continue
        indent = lines[node.lineno - 1][: node.col_offset]
        if indent.strip():  # ``x; import y`` on one line: not worth a parser of its own
            sys.exit(f"relayer: {where}:{node.lineno}: an import after another statement on its line; split it")
        new = _rewrite_import(node, indent)
        if new is None:
            continue
        assert node.end_lineno is not None
        old = lines[node.lineno - 1: node.end_lineno]
        comments = [line.split("#", 1)[1].strip() for line in old if "#" in line]
        if len(old) == 1 and comments and "\n" not in new:
            new += f"  # {comments[0]}"
        else:
            new = "".join(f"{indent}# {c}\n" for c in comments) + new
        edits.append((node.lineno - 1, node.end_lineno, new + "\n"))
    for start, end, new in sorted(edits, reverse=True):
        lines[start:end] = [new]
    return "".join(lines)


LONG = re.compile(r"\bgymrec\.((?:shared|recorder|replay)\.[A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)")
SHORT = re.compile(r"(?<![\w.])((?:shared|recorder|replay)\.[A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)")
FILE = re.compile(r"(?<![\w/.])((?:shared|recorder|replay)/[A-Za-z_]\w*)\.py\b")


def _dotted(prefix: str) -> Callable[[re.Match[str]], str]:
    def sub(m: re.Match[str]) -> str:
        moved = resolve_dotted(m.group(1), m.group(2))
        return m.group(0) if moved is None else prefix + moved

    return sub


def _file(m: re.Match[str]) -> str:
    moved = new_name(m.group(1).replace("/", "."))
    return m.group(0) if moved is None else str(path_of(moved))


def rewrite_prose(text: str) -> str:
    """Short names and file paths of moved modules (comments, docstrings, Markdown)."""
    return FILE.sub(_file, SHORT.sub(_dotted(""), LONG.sub(_dotted("gymrec."), text)))


def rewrite_python(text: str, where: str) -> str:
    """Imports through the AST; names and paths inside comments and strings (``-m`` targets included).

    Code outside imports is left alone: there ``replay.sources`` may be an attribute, and gymrec code
    names modules only through imports (``check_code`` reports any dotted ``gymrec.`` use left).
    """
    text = rewrite_imports(text, where)
    offsets = [0]
    for line in text.splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    out, last = [], 0
    for tok in tokenize.generate_tokens(io.StringIO(text).readline):
        if tok.type in (tokenize.COMMENT, tokenize.STRING):
            start = offsets[tok.start[0] - 1] + tok.start[1]
            end = offsets[tok.end[0] - 1] + tok.end[1]
            out += [text[last:start], rewrite_prose(text[start:end])]
            last = end
    out.append(text[last:])
    return "".join(out)


def old_references(text: str, where: str) -> list[str]:
    """What still names a moved module by its old name, in imports or in dotted code (``gymrec.x.y.z``)."""
    found = []
    for node in ast.walk(ast.parse(text, where)):
        if isinstance(node, ast.Import | ast.ImportFrom) and _rewrite_import(node, "") is not None:
            found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Attribute) and ast.unparse(node).startswith("gymrec."):
            dotted = ast.unparse(node).removeprefix("gymrec.").split(".")
            if len(dotted) >= 2 and resolve_dotted(".".join(dotted[:2]), "".join(f".{d}" for d in dotted[2:])):
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
    return found


def files_to_rewrite(root: Path) -> Iterable[Path]:
    for folder in SCANNED:
        for path in sorted((root / folder).rglob("*.py")) if (root / folder).is_dir() else []:
            if "__pycache__" not in path.parts:
                yield path
    yield from sorted(root.glob("*.md"))
    yield from sorted((root / "docs").rglob("*.md")) if (root / "docs").is_dir() else []


def rewrite_references(root: Path, dry_run: bool) -> list[Path]:
    changed = []
    for path in files_to_rewrite(root):
        rel = path.relative_to(root).as_posix()
        if rel in NOT_REWRITTEN or path.resolve() == SELF:
            continue
        text = path.read_text()
        new = rewrite_python(text, rel) if path.suffix == ".py" else rewrite_prose(text)
        if new != text:
            changed.append(path)
            if not dry_run:
                path.write_text(new)
    return changed


# --- 3. pyproject ----------------------------------------------------------------------------------


def packages() -> list[str]:
    found = ["gymrec." + p for p in PRODUCT]
    for package in NEW_PACKAGES:
        found.append("gymrec." + package)
    return sorted(set(found), key=lambda p: (p.split(".")[1] != "shared", p))


def _packages_toml() -> str:
    lines, line = [], "packages = ["
    for name in packages():
        item = f'"{name}", '
        if len(line) + len(item) > 110:
            lines.append(line.rstrip())
            line = " " * len("packages = [")
        line += item
    return "\n".join([*lines, line.rstrip(", ") + "]"]) + "\n"


def rewrite_pyproject(path: Path, dry_run: bool) -> bool:
    text = path.read_text()
    new = PACKAGES_LINE.sub(lambda _: _packages_toml(), text, count=1)
    if not PACKAGES_LINE.search(text):
        sys.exit("relayer: pyproject.toml has no [tool.setuptools] packages = [...] line")
    if not IMPORTLINTER.search(new):
        sys.exit("relayer: pyproject.toml's [tool.importlinter] section does not start with its comment line")
    new = IMPORTLINTER.sub(lambda _: IMPORTLINTER_TOML, new, count=1)
    if new != text and not dry_run:
        path.write_text(new)
    return new != text


# --- 4. import order ---------------------------------------------------------------------------------


def sort_imports(root: Path, paths: list[Path]) -> None:
    ruff = root / ".venv" / "bin" / "ruff"
    python_files = [str(p) for p in paths if p.suffix == ".py"]
    if not python_files:
        return
    if not ruff.exists():
        print("relayer: no .venv/bin/ruff: run `.venv/bin/ruff check --select I --fix` yourself", file=sys.stderr)
        return
    subprocess.run([str(ruff), "check", "--quiet", "--select", "I", "--fix", *python_files], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
    parser.add_argument("--no-git", action="store_true", help="plain renames instead of git mv")
    args = parser.parse_args(argv)
    root = Path.cwd()
    if not (root / "pyproject.toml").is_file() or 'name = "gymrec"' not in (root / "pyproject.toml").read_text():
        print("relayer: run it from the gymrec repository root", file=sys.stderr)
        return 2
    moved = move_files(args.dry_run, use_git=not args.no_git)
    rewritten = rewrite_references(root, args.dry_run)
    pyproject = rewrite_pyproject(root / "pyproject.toml", args.dry_run)
    if not args.dry_run:
        sort_imports(root, rewritten)
        left = [ref for path in files_to_rewrite(root) if path.suffix == ".py" and path.resolve() != SELF
                for ref in old_references(path.read_text(), path.relative_to(root).as_posix())]
        if left:
            print("relayer: still naming moved modules the old way (fix by hand):", *left, sep="\n  ",
                  file=sys.stderr)
            return 1
    for line in moved:
        print(line)
    for path in rewritten:
        print(f"rewrite {path.relative_to(root)}")
    if pyproject:
        print("rewrite pyproject.toml (packages, import contracts)")
    if not (moved or rewritten or pyproject):
        print("relayer: nothing to do (already split)")
    loose = sorted(p.name for p in (root / "shared").glob("*.py") if p.stem not in STAYS_IN_SHARED)
    if loose:  # new since MOVES was written: no contract places them
        print(f"relayer: shared/ has modules outside the sub-packages: {', '.join(loose)}; add them to MOVES "
              "and run again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
