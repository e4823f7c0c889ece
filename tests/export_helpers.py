"""Helpers for the gymrec-export suites: run the CLI, build local datasets, read recorded frames."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from gymrec.shared.spool.sources import SpoolSource
from tests.conftest import run_cli


def export_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("gymrec-export", *args, cwd=cwd, env=env, timeout=300)


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The run failed with exit 2 and exactly one stderr line, no traceback; returns that line."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def to_local_dataset(spool: Path, root: Path, cwd: Path) -> Path:
    """The real uploader's local dataset of a copy of ``spool`` (the uploader moves what it uploads)."""
    copy = root.parent / f"{root.name}-spool"
    shutil.copytree(spool, copy)
    proc = run_cli("gymrec-uploader", "--spool", str(copy), "--once", "--local-dir", str(root), cwd=cwd,
                   env={"HF_TOKEN": ""})
    assert proc.returncode == 0, proc.stderr
    return root


def recorded_frames(episode: Path) -> dict[str, list[np.ndarray]]:
    """Every recorded observation leaf of a spool episode, rows 0..T."""
    out: dict[str, list[np.ndarray]] = {}
    for _, obs in SpoolSource(episode).observations():
        for name, value in obs.items():
            out.setdefault(name, []).append(value)
    return out


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
