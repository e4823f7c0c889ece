"""What the daemon says (issue 22 items 4 and 6): one line per commit, one summary line on exit, exit 0
on Ctrl-C when nothing was lost; ``compact`` with no flags works on the uploader's default dataset."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from uploader_helpers import BIN, clean_env, daemon_until, local_index, record_episode, run_uploader


def test_the_daemon_says_each_commit_and_ends_on_ctrl_c_with_a_summary(tmp_path: Path, spool: Path) -> None:
    sealed = record_episode(spool, "BreakoutNoFrameskip-v4", 30, seed=3)
    dataset = tmp_path / "dataset"
    args = ["--spool", str(spool), "--local-dir", str(dataset), "--commit-every", "0"]
    code, out, err = daemon_until(args, tmp_path, clean_env(HOME=str(tmp_path)),
                                  lambda: (spool / "uploaded-local" / sealed.name).is_dir(), "committed the episode",
                                  signal.SIGINT)  # what Ctrl-C sends
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("gymrec-uploader: watching"), err
    assert lines[1] == f"committed 1 episode(s), 30 steps to {dataset}", err
    assert out.strip().splitlines() == [f"1 uploaded to {dataset}, 0 already there, 0 quarantined, 0 failed"]
    assert sealed.stem in local_index(dataset)


def test_compact_without_flags_uses_the_uploaders_default_dataset(tmp_path: Path, spool: Path) -> None:
    for seed in (1, 2):
        record_episode(spool, "BreakoutNoFrameskip-v4", 30, seed=seed)
    env = clean_env(HOME=str(tmp_path))
    done = run_uploader(["--spool", str(spool), "--once", "--batch-episodes", "1"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    default = tmp_path / ".local" / "share" / "gymrec" / "dataset"
    assert len(local_index(default)) == 2
    done = run_uploader(["compact"], tmp_path, env)
    assert done.returncode == 0 and "2 shards merged into 1" in done.stdout and str(default) in done.stdout, done.stderr
    assert len(local_index(default)) == 2


def test_status_into_a_closed_pipe_ends_quietly(tmp_path: Path, spool: Path) -> None:
    """``gymrec-uploader status | head -1``: the reader is gone before the table is written (issue 21.5)."""
    record_episode(spool, "BreakoutNoFrameskip-v4", 10, seed=1)
    proc = subprocess.Popen([str(BIN / "gymrec-uploader"), "status", "--spool", str(spool)], cwd=tmp_path,
                            env=clean_env(HOME=str(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as head does once it has its lines
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 0 and err == "", err
