"""Readers over a dataset that lists an episode twice (published twice by a gymrec before exactly-once,
or copies made by hand): the same content is read once with a warning naming it; different contents
make that one episode corrupt (exit 5) and every other episode stays readable."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from uploader_helpers import BIN, clean_env, record_episode, run_uploader

from gymrec.shared.dataset import layout

ENV = "BreakoutNoFrameskip-v4"


def _dataset(tmp_path: Path) -> tuple[Path, list[str], Path]:
    spool = tmp_path / "spool"
    spool.mkdir()
    ids = [record_episode(spool, ENV, 20, seed).stem for seed in (1, 2, 3)]
    dataset = tmp_path / "dataset"
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset), "--workers", "1"],
                        tmp_path, clean_env(HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    (index,) = sorted((dataset / layout.INDEX_DIR).rglob(f"*{layout.SHARD_SUFFIX}"))
    return dataset, sorted(ids), index


def _beside(index: Path, shard: str) -> Path:
    """Another index shard of the same config, named as the uploader names shards."""
    path = index.parents[1] / shard[:2] / f"{shard}{layout.SHARD_SUFFIX}"
    path.parent.mkdir(exist_ok=True)
    return path


def _replay_all(dataset: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "gymrec-replay"), str(dataset), "--all"], capture_output=True, text=True,
                          cwd=tmp_path, env=clean_env(HOME=str(tmp_path)), timeout=300)


def test_an_episode_listed_twice_with_the_same_content_is_read_once(tmp_path: Path) -> None:
    dataset, ids, index = _dataset(tmp_path)
    shutil.copy(index, _beside(index, "f" * 32))  # every episode listed twice, same content
    done = _replay_all(dataset, tmp_path)
    assert done.returncode == 0, done.stderr
    assert sum(1 for line in done.stdout.splitlines() if "identical" in line) == 3
    assert all(eid in done.stderr for eid in ids) and "listed 2 times with the same content" in done.stderr


def test_an_episode_listed_with_two_contents_is_corrupt_and_the_rest_reads(tmp_path: Path) -> None:
    dataset, ids, index = _dataset(tmp_path)
    table = pq.read_table(index)
    mine = table.filter(pa.compute.equal(table["episode_id"], ids[0]))
    other = mine.set_column(mine.schema.get_field_index("content_digest"), "content_digest",
                            pa.array(["0" * 64], pa.string()))
    pq.write_table(other, _beside(index, "e" * 32))
    done = _replay_all(dataset, tmp_path)
    assert done.returncode == 5, (done.stdout, done.stderr)
    assert sum(1 for line in done.stdout.splitlines() if "identical" in line) == 2
    assert "listed 2 times with different content" in done.stdout + done.stderr and "Traceback" not in done.stderr
    video = subprocess.run([str(BIN / "gymrec-export"), "video", str(dataset), "--all", str(tmp_path / "videos")],
                           capture_output=True, text=True, cwd=tmp_path, env=clean_env(HOME=str(tmp_path)), timeout=300)
    assert video.returncode == 5 and ids[0] in video.stderr, (video.stdout, video.stderr)
    assert len(list((tmp_path / "videos").glob("*.mp4"))) == 2
