"""Compaction is crash-safe at every rename and delete (issue 21 item 4): strace SIGKILLs
``gymrec-uploader compact`` at the Nth rename, unlink and rmdir in turn, and a rerun heals: every
episode listed once, info.json's totals match the shards, the data rows match the index, and the next
upload works. ``make stress`` (GYMREC_STRESS=1) kills at every call; ``make test`` at the first, the
middle and the last call of each kind (tests/reliability_uploader_helpers.py ``spread``)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from uploader_helpers import BIN, clean_env, local_index, run_uploader

from gymrec.shared.dataset import layout
from tests.recording import RecordingCache
from tests.reliability_uploader_helpers import spread

SYSCALLS = ("rename", "unlink", "rmdir")
STRACE = shutil.which("strace")


def _strace_works() -> str | None:
    if STRACE is None:
        return "strace is not installed (apt-get install strace)"
    probe = subprocess.run([STRACE, "-f", "-o", "/dev/null", "-e", "inject=rename:signal=KILL:when=1", "true"], capture_output=True)
    return None if probe.returncode == 0 else f"strace cannot trace here ({probe.stderr.decode().strip()[:200]})"


def _healthy(dataset: Path, expected: set[str]) -> None:
    index = local_index(dataset)  # asserts each episode is listed once
    assert set(index) == expected
    info = json.loads((dataset / layout.INFO_PATH).read_text())["configs"]["breakoutnoframeskip-v4"]
    data = sorted((dataset / layout.DATA_DIR).rglob("*" + layout.SHARD_SUFFIX))
    assert info["episodes"] == len(expected) and info["shards"] == len(data)
    assert info["steps"] == sum(int(r["length"]) for r in index.values())
    rows = {str(p.relative_to(dataset)): pq.read_metadata(p).num_rows for p in data}
    for row in index.values():
        assert row["data_file"] in rows
    assert sum(rows.values()) == info["steps"], "a data shard holds rows no index row points at"


def _calls(log: Path) -> dict[str, int]:
    text = log.read_text()
    return {name: len(re.findall(rf"(?:^|\s){name}\(", text, re.MULTILINE)) for name in SYSCALLS}


def test_a_kill_at_every_rename_and_delete_of_compaction_heals_on_rerun(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    reason = _strace_works()
    if reason is not None:
        pytest.skip(reason)
    for seed in (1, 2, 3):
        recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, seed)
    template = tmp_path / "template"
    env = clean_env(HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(template), "--batch-episodes", "1"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    expected = set(local_index(template))
    exe = str(BIN / "gymrec-uploader")
    log = tmp_path / "trace.log"
    clean = tmp_path / "clean"
    shutil.copytree(template, clean)
    traced = subprocess.run([STRACE, "-f", "-o", str(log), "-e", f"trace={','.join(SYSCALLS)}", exe, "compact", "--local-dir", str(clean)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert traced.returncode == 0 and "3 shards merged into 1" in traced.stdout, traced.stderr
    calls = _calls(log)
    assert calls["rename"] >= 4 and calls["unlink"] >= 6, calls  # the pending journal, 2 shards, info, card; 6 old shards
    killed = planned = 0
    for name in SYSCALLS:
        points = spread(calls[name], 1)  # make test: the middle call of each kind (CI's 15 minutes)
        planned += len(points)
        for n in points:
            dataset = tmp_path / f"ds-{name}-{n}"
            shutil.copytree(template, dataset)
            cut = subprocess.run([STRACE, "-f", "-o", "/dev/null", "-e", f"inject={name}:signal=KILL:when={n}", exe, "compact",
                                  "--local-dir", str(dataset)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
            killed += cut.returncode != 0
            rerun = run_uploader(["compact", "--local-dir", str(dataset)], tmp_path, env)
            assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, f"{name} #{n}: {rerun.stderr}"
            _healthy(dataset, expected)
            shutil.rmtree(dataset)
    assert killed >= planned - 2, "the injected kills did not land"
    # and the dataset still takes new episodes
    shutil.copytree(template, tmp_path / "last")
    recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, 4)
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(tmp_path / "last")], tmp_path, env)
    assert done.returncode == 0 and done.stdout.startswith("1 uploaded"), done.stderr
