"""Local-dir mode (no token): conversion round-trips bit-exactly through datasets.load_dataset."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image
from uploader_helpers import clean_env, record_episode, record_in_subprocess, run_uploader, spool_frames

from gymrec.shared import schema
from gymrec.shared.attrs import REQUIRED_FIELDS, SEAL_FIELDS
from gymrec.shared.episode import Episode
from gymrec.uploader import layout
from gymrec.uploader.claims import QUARANTINE_AREA, REASON_SUFFIX, RECEIPT_SUFFIX, UPLOADED_LOCAL_AREA
from tests.recording import chunk_path


def _upload_local(spool: Path, dataset: Path, cwd: Path, *extra: str) -> str:
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset), "--workers", "2", *extra], cwd, clean_env(HOME=str(cwd)))
    assert done.returncode == 0, done.stderr
    return done.stdout


def _load(dataset: Path, config: str | None = None) -> datasets.Dataset:
    # datasets fixes its cache dir at import time (before conftest's HF_HOME), and pytest reuses tmp
    # paths across sessions: a private cache keeps a stale dataset from being returned.
    return datasets.load_dataset(str(dataset), config, split="train", cache_dir=str(dataset.parent / "hf-datasets-cache"))


def _check_round_trip(dataset: Path, sealed: Path, config: str | None = None) -> None:
    frames, final, attrs = spool_frames(sealed)
    eid = attrs["episode_id"]
    ds = _load(dataset, config)
    rows = ds.filter(lambda e: e == eid, input_columns="episode_id")
    assert len(rows) == len(frames) == attrs["length"]
    episode = Episode(sealed)
    actions = episode.actions()
    hashes = episode.hashes(attrs["image_key"], 0, episode.length)
    for t, row in enumerate(rows):
        assert row["step"] == t
        decoded = np.asarray(row["observation"])
        assert decoded.dtype == np.uint8 and np.array_equal(decoded.reshape(frames[t].shape), frames[t]), f"frame {t}"
        assert row["observation_hash"] == int(hashes[t])
        assert schema.row_hash(decoded.reshape(frames[t].shape)) == int(hashes[t])
        native = layout.decode_action_value(attrs["action_space"], row["action"])
        expected = actions[t]
        if isinstance(expected, dict):
            assert all(np.array_equal(native[k], v) for k, v in expected.items())
        else:
            assert np.array_equal(native, expected) and type(native) is type(expected)
    meta = json.loads((dataset / layout.meta_path(eid)).read_text())
    for key in (*REQUIRED_FIELDS, *SEAL_FIELDS):
        assert meta[key] == attrs[key], key
    assert meta["data_file"] == layout.data_path(attrs["env_id"], eid)
    final_png = np.asarray(Image.open(dataset / meta["final_observation_file"]))
    assert np.array_equal(final_png.reshape(final.shape), final)
    assert meta["final_observation_hash"] == schema.row_hash(final)


def test_atari_round_trip_and_receipt(tmp_path: Path, spool: Path) -> None:
    sealed = record_episode(spool, "BreakoutNoFrameskip-v4", 150, seed=3)
    dataset = tmp_path / "dataset"
    out = _upload_local(spool, dataset, tmp_path)
    assert out.startswith("1 uploaded")
    moved = spool / UPLOADED_LOCAL_AREA / sealed.name
    assert moved.is_dir() and not sealed.exists()
    receipt = json.loads((spool / UPLOADED_LOCAL_AREA / (sealed.stem + RECEIPT_SUFFIX)).read_text())
    assert receipt["repo"] == "local" and layout.data_path("BreakoutNoFrameskip-v4", sealed.stem) in receipt["paths"]
    _check_round_trip(dataset, moved)
    _check_round_trip(dataset, moved, "breakoutnoframeskip-v4")
    assert (dataset / layout.preview_path("breakoutnoframeskip-v4")).is_file()
    # a second run finds nothing to do and changes nothing
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and ".lock" not in p.name}
    assert _upload_local(spool, dataset, tmp_path).startswith("0 uploaded")
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and ".lock" not in p.name} == before


def test_vizdoom_round_trip_with_gamevariables(tmp_path: Path, spool: Path, workdir: Path) -> None:
    sealed = record_episode(spool, "VizdoomBasic-v1", 120, seed=5)
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, workdir)
    moved = spool / UPLOADED_LOCAL_AREA / sealed.name
    _check_round_trip(dataset, moved, "vizdoombasic-v1")
    episode = Episode(moved)
    ds = _load(dataset, "vizdoombasic-v1")
    gv = np.asarray(ds["gamevariables"], dtype=np.float32)
    assert np.array_equal(gv, episode.obs("gamevariables", 0, episode.length))
    meta = json.loads((dataset / layout.meta_path(episode.id)).read_text())
    assert meta["final_gamevariables"] == episode.final_obs()["gamevariables"].tolist()


def test_retro_round_trip_multibinary(tmp_path: Path, spool: Path) -> None:
    sealed = record_in_subprocess(spool, "Airstriker-Genesis-v0", 100, seed=2, cwd=tmp_path)
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, tmp_path)
    moved = spool / UPLOADED_LOCAL_AREA / sealed.name
    _check_round_trip(dataset, moved, "airstriker-genesis-v0")
    ds = _load(dataset)
    assert ds.features["action"] == datasets.List(datasets.Value("int8"))


def test_card_yaml_and_totals_two_envs(tmp_path: Path, spool: Path, workdir: Path) -> None:
    a = [record_episode(spool, "BreakoutNoFrameskip-v4", n, seed=s) for n, s in ((60, 1), (90, 2))]
    d = record_episode(spool, "VizdoomBasic-v1", 40, seed=1)
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, workdir)
    text = (dataset / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] and "reinforcement-learning" in front["task_categories"]
    assert "gymrec" in front["tags"] and "vizdoom" in front["tags"]
    configs = {c["config_name"]: c for c in front["configs"]}
    assert configs["breakoutnoframeskip-v4"]["data_files"][0]["path"] == "data/breakoutnoframeskip-v4/*.parquet"
    assert set(configs) == {"breakoutnoframeskip-v4", "vizdoombasic-v1"}
    atari_steps = sum(Episode(spool / UPLOADED_LOCAL_AREA / p.name).length for p in a)
    doom_steps = Episode(spool / UPLOADED_LOCAL_AREA / d.name).length
    assert f"| `breakoutnoframeskip-v4` | 2 | {atari_steps} |" in text
    assert f"| `vizdoombasic-v1` | 1 | {doom_steps} |" in text
    assert f"| **all** | 3 | {atari_steps + doom_steps} |" in text
    hours = atari_steps / 60 / 3600
    assert f"{hours:.3f}" in text
    assert "meta/final/<episode_id>.png" in text and "gymrec-replay <episode_id>" in text
    assert _load(dataset).num_rows == atari_steps  # the default config


def test_discarded_empty_and_corrupt(tmp_path: Path, spool: Path) -> None:
    good = record_episode(spool, "BreakoutNoFrameskip-v4", 70, seed=1)
    discarded = record_episode(spool, "BreakoutNoFrameskip-v4", 70, seed=2, end_reason="discarded")
    corrupt = record_episode(spool, "BreakoutNoFrameskip-v4", 70, seed=3)
    chunk = chunk_path(corrupt, "obs/frame", 0)
    chunk.write_bytes(b"not zstd at all")
    dataset = tmp_path / "dataset"
    out = _upload_local(spool, dataset, tmp_path)
    assert out.startswith("1 uploaded") and "1 quarantined" in out
    assert (spool / UPLOADED_LOCAL_AREA / good.name).is_dir()
    assert discarded.is_dir()  # left in place, never uploaded
    assert not (dataset / layout.meta_path(discarded.stem)).exists()
    assert (spool / QUARANTINE_AREA / corrupt.name).is_dir()
    reason = (spool / QUARANTINE_AREA / (corrupt.stem + REASON_SUFFIX)).read_text()
    assert "obs/frame" in reason
    status = run_uploader(["--spool", str(spool), "status"], tmp_path, clean_env(HOME=str(tmp_path)))
    lines = {line.split()[0]: line.split()[1:] for line in status.stdout.splitlines()[1:]}
    assert lines["discarded"] == ["1", "70"] and lines["quarantined"][0] == "1" and lines["uploaded-local"] == ["1", "70"]
    assert lines["waiting"][0] == "0"


def test_bad_input_one_line(tmp_path: Path, spool: Path) -> None:
    bad = run_uploader(["--spool", str(spool), "--once", "--repo-id", "../etc/passwd"], tmp_path, clean_env(HOME=str(tmp_path)))
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1 and "repo id" in bad.stderr
    missing = run_uploader(["--spool", str(tmp_path / "nope"), "--once"], tmp_path, clean_env(HOME=str(tmp_path)))
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("repo_id", ["a/b", "alice/gymrec-ale-breakout-v5", "x.y_z/n-1"])
def test_repo_id_ok(repo_id: str) -> None:
    from gymrec.uploader.config import check_repo_id

    assert check_repo_id(repo_id) == repo_id


def test_slugs_and_action_encoding() -> None:
    assert layout.env_slug("ALE/Breakout-v5") == "ale-breakout-v5"
    assert layout.env_slug("BreakoutNoFrameskip-v4") == "breakoutnoframeskip-v4"
    assert layout.env_slug("VizdoomBasic-v1") == "vizdoombasic-v1"
    desc = {"type": "Dict", "spaces": {
        "binary": {"type": "MultiBinary", "shape": [3]},
        "continuous": {"type": "Box", "shape": [2, 2], "dtype": "float32", "low": -1.0, "high": 1.0},
    }}  # fmt: skip
    leaves = {"binary": np.array([[1, 0, 1], [0, 0, 1]], np.int8), "continuous": np.arange(8, dtype=np.float32).reshape(2, 2, 2) / 3}
    column = layout.encode_action_column(desc, leaves)
    values = column.to_pylist()
    assert values[0]["binary"] == [1, 0, 1] and values[1]["continuous"][1] == leaves["continuous"][1][1].tolist()
    back = layout.decode_action_value(desc, values[1])
    assert back["binary"].dtype == np.int8 and np.array_equal(back["continuous"], leaves["continuous"][1])
    assert layout.decode_action_value({"type": "Discrete", "n": 4, "start": 0}, 3) == 3
