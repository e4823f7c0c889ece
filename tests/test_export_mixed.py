"""Exports and ``replay --all`` on a spool like a human's: a discarded episode is skipped quietly, a
damaged one is left out with one warning while the rest is exported, and the run exits 5. Also the
output-place mistakes of issue 21/22: a directory as OUT, a folder that does not exist, a read-only
mount, a Minari id without -vN, and the temporary a SIGTERM or SIGKILL leaves behind."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from gymrec.shared.errors import ChunkCorruptError
from tests.conftest import BIN
from tests.export_helpers import export_cli, one_line_error, to_local_dataset
from tests.recording import chunk_path, record_episode
from tests.replay_helpers import flip_a_decodable_bit, replay_cli

pytestmark = pytest.mark.slow  # real exports and signals in subprocesses: make test, not make check
ENV = "BreakoutNoFrameskip-v4"
CORRUPT = ChunkCorruptError.exit_code


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spool = tmp_path_factory.mktemp("mixed-spool")
    good = record_episode(spool, ENV, 40, 1)
    discarded = record_episode(spool, ENV, 40, 2, end_reason="discarded")
    damaged = record_episode(spool, ENV, 40, 3)
    flip_a_decodable_bit(chunk_path(damaged, "obs/frame", 0))
    return {"spool": spool, "good": good, "discarded": discarded, "damaged": damaged}


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning" in line]


def test_video_all_skips_discarded_and_leaves_out_the_damaged_one(mixed: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "videos"
    proc = export_cli("video", str(mixed["spool"]), "--all", str(out), cwd=tmp_path)
    assert proc.returncode == CORRUPT, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"{mixed['good'].stem}.mp4"]
    (warning,) = _warnings(proc.stderr)
    assert mixed["damaged"].stem in warning and "corrupt" in warning
    assert "Traceback" not in proc.stderr


def test_minari_exports_the_rest_and_exits_5(mixed: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "minari"
    proc = export_cli("minari", str(mixed["spool"]), "gymrec/mixed-v0", cwd=tmp_path,
                      env={"MINARI_DATASETS_PATH": str(root)})
    assert proc.returncode == CORRUPT, proc.stderr
    assert "1 episode(s)" in proc.stdout and "1 damaged left out" in proc.stdout, proc.stdout
    assert len(_warnings(proc.stderr)) == 1
    assert (root / "gymrec" / "mixed-v0" / "data").is_dir()


def test_minari_of_a_spool_without_the_damaged_one_exits_0(mixed: dict[str, Path], tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    for name in ("good", "discarded"):
        os.symlink(mixed[name], spool / mixed[name].name)
    proc = export_cli("minari", str(spool), "gymrec/clean-v0", cwd=tmp_path, env={"MINARI_DATASETS_PATH": str(tmp_path / "m")})
    assert proc.returncode == 0, proc.stderr
    assert "1 episode(s)" in proc.stdout and "1 skipped" in proc.stdout


def test_replay_all_with_a_damaged_episode_exits_5_and_replays_the_rest(mixed: dict[str, Path], tmp_path: Path) -> None:
    proc = replay_cli(["--spool", str(mixed["spool"]), "--all"], cwd=tmp_path)
    assert proc.returncode == CORRUPT, proc.stderr
    assert "identical" in proc.stdout and "corrupt" in proc.stdout


def test_replay_help_lists_every_exit_code(tmp_path: Path) -> None:
    proc = replay_cli(["--help"], cwd=tmp_path)
    for line in ("0  every episode is identical", "1  an episode diverged", "2  an error", "4  --render", "5  stored data"):
        assert line in proc.stdout, proc.stdout


def test_out_that_is_a_directory_is_one_line_even_with_force(mixed: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "out.mp4").mkdir()
    line = one_line_error(export_cli("video", str(mixed["good"]), str(tmp_path / "out.mp4"), "--force", cwd=tmp_path))
    assert "is a directory" in line
    assert (tmp_path / "out.mp4").is_dir() and not any((tmp_path / "out.mp4").iterdir())


def test_a_missing_folder_is_refused_not_created(mixed: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "nonexistent" / "dir" / "out.mp4"
    line = one_line_error(export_cli("video", str(mixed["good"]), str(target), cwd=tmp_path))
    assert "does not exist" in line
    assert not (tmp_path / "nonexistent").exists()


def test_a_minari_id_without_a_version_is_one_line(mixed: dict[str, Path], tmp_path: Path) -> None:
    line = one_line_error(export_cli("minari", str(mixed["spool"]), "gymrec/breakout", cwd=tmp_path,
                                     env={"MINARI_DATASETS_PATH": str(tmp_path / "m")}))
    assert "not a Minari dataset id" in line and "-vN" in line


def _read_only_mount(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("only root can mount the read-only tmpfs this test needs")
    point = tmp_path / "ro"
    point.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(point)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    return point


@pytest.mark.parametrize("what", ["video", "minari", "minari-home"])
def test_a_read_only_target_is_one_line(what: str, mixed: dict[str, Path], tmp_path: Path) -> None:
    point = _read_only_mount(tmp_path)
    try:
        if what == "video":
            proc = export_cli("video", str(mixed["good"]), str(point / "out.mp4"), cwd=tmp_path)
        else:
            env = {"MINARI_DATASETS_PATH": str(point / "datasets")} if what == "minari" else {"HOME": str(point)}
            if what == "minari-home":
                env["MINARI_DATASETS_PATH"] = ""
            proc = export_cli("minari", str(mixed["spool"]), "gymrec/ro-v0", cwd=tmp_path, env=env)
        line = one_line_error(proc)
        assert "cannot write to" in line and "unexpected" not in line
    finally:
        subprocess.run(["umount", "-l", str(point)], check=False)


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_temporary_left_by_a_killed_export_is_removed_by_the_next(mixed: dict[str, Path], tmp_path: Path) -> None:
    root = tmp_path / "minari"
    stale = root / "gymrec" / f".left-v0.tmp-{_dead_pid()}-0123abcd"
    (stale / "data").mkdir(parents=True)
    other = root / "gymrec" / ".someone-elses-v0.tmp-1-0123abcd"  # another target's: not ours to remove
    other.mkdir()
    proc = export_cli("minari", str(mixed["spool"]), "gymrec/left-v0", cwd=tmp_path, env={"MINARI_DATASETS_PATH": str(root)})
    assert proc.returncode == CORRUPT, proc.stderr
    assert not stale.exists() and other.exists()


def test_sigterm_during_a_minari_export_leaves_no_temporary(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for seed in range(4):  # long enough to still be writing when the signal arrives
        record_episode(spool, ENV, 400, seed)
    root = tmp_path / "minari"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(root)}
    proc = subprocess.Popen([str(BIN / "gymrec-export"), "minari", str(spool), "gymrec/term-v0"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    folder = root / "gymrec"
    # Wait (by what is on disk, not by time) until the export writes its temporary, then stop it.
    while proc.poll() is None and not (folder.is_dir() and any(p.name.startswith(".term-v0.tmp-") for p in folder.iterdir())):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), stderr
    leftovers = [p.name for p in folder.iterdir() if p.name.startswith(".")] if folder.is_dir() else []
    assert leftovers == [], leftovers
    if proc.returncode == 130:
        assert "interrupted" in stderr and not (folder / "term-v0").exists()


def test_a_truncated_shard_is_left_out_and_the_rest_exported(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    for seed in (1, 2):  # one upload each: one data shard per episode
        record_episode(spool, ENV, 20, seed)
        to_local_dataset(spool, tmp_path / "ds", tmp_path)
        shutil.rmtree(spool)
        shutil.rmtree(tmp_path / "ds-spool")  # the uploaded copy to_local_dataset made
    shards = sorted((tmp_path / "ds" / "data").rglob("*.parquet"))
    assert len(shards) == 2
    shards[0].write_bytes(shards[0].read_bytes()[: shards[0].stat().st_size // 2])
    proc = export_cli("video", str(tmp_path / "ds"), "--all", str(tmp_path / "videos"), cwd=tmp_path)
    assert proc.returncode == CORRUPT, proc.stderr
    assert len(list((tmp_path / "videos").iterdir())) == 1
    (warning,) = _warnings(proc.stderr)
    assert "not readable parquet" in warning
