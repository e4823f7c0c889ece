"""Local-dir mode (no token): conversion round-trips bit-exactly through datasets.load_dataset."""

from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import yaml
from PIL import Image
from uploader_helpers import (
    clean_env,
    local_index,
    record_episode,
    record_in_subprocess,
    run_uploader,
    spool_frames,
)

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES
from gymrec.shared.dataset.frames import FrameStore
from gymrec.shared.dataset.index import DatasetIndex
from gymrec.shared.dataset.reader import LocalFiles
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import REQUIRED_FIELDS, SEAL_FIELDS
from gymrec.shared.spool.episode import Episode
from gymrec.uploader import encoding
from gymrec.uploader.claims import QUARANTINE_AREA, REASON_SUFFIX, RECEIPT_SUFFIX, UPLOADED_LOCAL_AREA
from tests.recording import RecordingCache, chunk_path


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
    with FrameStore(DatasetIndex(LocalFiles(dataset))) as store:
        stored = store.episode(eid, verify=True).read(0, len(frames) + 1)  # the final observation is the last
    assert stored.dtype == np.uint8 and np.array_equal(stored[-1].reshape(final.shape), final)
    for t, row in enumerate(rows):
        assert row["step"] == t
        decoded = stored[t]
        assert np.array_equal(decoded.reshape(frames[t].shape), frames[t]), f"frame {t}"
        assert row["observation_hash"] == int(hashes[t])
        assert schema.row_hash(decoded.reshape(frames[t].shape)) == int(hashes[t])
        preview = row[layout.PREVIEW_COLUMN]  # the first frame of each block, for the dataset viewer
        assert (preview is None) == (t % BLOCK_FRAMES != 0), t
        if preview is not None:
            assert np.array_equal(np.asarray(preview).reshape(frames[t].shape), frames[t])
        native = layout.decode_action_value(attrs["action_space"], row["action"])
        expected = actions[t]
        if isinstance(expected, dict):
            assert all(np.array_equal(native[k], v) for k, v in expected.items())
        else:
            assert np.array_equal(native, expected) and type(native) is type(expected)
    row = local_index(dataset)[eid]
    meta = json.loads(row["attributes"])
    for key in (*REQUIRED_FIELDS, *SEAL_FIELDS):
        assert meta[key] == attrs[key], key
    assert row["data_file"].startswith(f"data/{layout.env_slug(attrs['env_id'])}/") and (dataset / row["data_file"]).is_file()
    assert row["length"] == row["row_count"] == attrs["length"] and row["env_id"] == attrs["env_id"]
    final_png = np.asarray(Image.open(io.BytesIO(row["final_observation"]["bytes"])))
    assert np.array_equal(final_png.reshape(final.shape), final)
    assert row["final_observation_hash"] == schema.row_hash(final)


def test_atari_round_trip_and_receipt(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = recordings.copy(spool, "BreakoutNoFrameskip-v4", 150, 3)
    dataset = tmp_path / "dataset"
    out = _upload_local(spool, dataset, tmp_path)
    assert out.startswith("1 uploaded")
    moved = spool / UPLOADED_LOCAL_AREA / sealed.name
    assert moved.is_dir() and not sealed.exists()
    receipt = json.loads((spool / UPLOADED_LOCAL_AREA / (sealed.stem + RECEIPT_SUFFIX)).read_text())
    assert receipt["repo"] == "local" and any(p.startswith("data/breakoutnoframeskip-v4/") for p in receipt["paths"])
    assert receipt["batch_id"] and not list((spool / "batches").glob("*.json"))  # the manifest is gone after the receipt
    _check_round_trip(dataset, moved)  # one config: datasets takes it without a name
    _check_round_trip(dataset, moved, "breakoutnoframeskip-v4")
    info = json.loads((dataset / layout.INFO_PATH).read_text())
    assert info["format_version"] == layout.FORMAT_VERSION and info["configs"]["breakoutnoframeskip-v4"]["episodes"] == 1
    assert (dataset / layout.preview_path("breakoutnoframeskip-v4")).is_file()
    # a second run finds nothing to do and changes nothing
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and ".lock" not in p.name}
    assert _upload_local(spool, dataset, tmp_path).startswith("0 uploaded")
    assert {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and ".lock" not in p.name} == before


def test_vizdoom_round_trip_with_gamevariables(recordings: RecordingCache, tmp_path: Path, spool: Path, workdir: Path) -> None:
    sealed = recordings.copy(spool, "VizdoomBasic-v1", 120, 5)
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, workdir)
    moved = spool / UPLOADED_LOCAL_AREA / sealed.name
    _check_round_trip(dataset, moved, "vizdoombasic-v1")
    episode = Episode(moved)
    ds = _load(dataset, "vizdoombasic-v1")
    gv = np.asarray(ds["gamevariables"], dtype=np.float32)
    assert np.array_equal(gv, episode.obs("gamevariables", 0, episode.length))
    row = local_index(dataset)[episode.id]
    assert json.loads(row["final_extra"])["gamevariables"] == episode.final_obs()["gamevariables"].tolist()


def test_retro_round_trip_multibinary(tmp_path: Path, spool: Path) -> None:
    sealed = record_in_subprocess(spool, "Airstriker-Genesis-v0", 100, seed=2, cwd=tmp_path)
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, tmp_path)
    moved = spool / UPLOADED_LOCAL_AREA / sealed.name
    _check_round_trip(dataset, moved, "airstriker-genesis-v0")
    ds = _load(dataset)
    assert ds.features["action"] == datasets.List(datasets.Value("int8"))


def test_card_yaml_and_totals_two_envs(recordings: RecordingCache, tmp_path: Path, spool: Path, workdir: Path) -> None:
    a = [recordings.copy(spool, "BreakoutNoFrameskip-v4", n, s) for n, s in ((60, 1), (90, 2))]
    d = recordings.copy(spool, "VizdoomBasic-v1", 40, 1)
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, workdir)
    text = (dataset / "README.md").read_text()
    front = yaml.safe_load(text.split("---\n")[1])
    assert front["license"] and "reinforcement-learning" in front["task_categories"]
    assert "gymrec" in front["tags"] and "vizdoom" in front["tags"]
    configs = {c["config_name"]: c for c in front["configs"]}
    assert configs["breakoutnoframeskip-v4"]["data_files"][0]["path"] == "data/breakoutnoframeskip-v4/*/*.parquet"
    assert not any(c.get("default") for c in configs.values()) and front["task_categories"] == ["reinforcement-learning"]
    assert set(configs) == {"breakoutnoframeskip-v4", "vizdoombasic-v1"}
    atari_steps = sum(Episode(spool / UPLOADED_LOCAL_AREA / p.name).length for p in a)
    doom_steps = Episode(spool / UPLOADED_LOCAL_AREA / d.name).length
    assert f"| `breakoutnoframeskip-v4` | 2 | {atari_steps} |" in text
    assert f"| `vizdoombasic-v1` | 1 | {doom_steps} |" in text
    assert f"| **all** | 3 | {atari_steps + doom_steps} |" in text
    hours = atari_steps / 60 / 3600
    assert f"{hours:.3f}" in text
    assert f"gymrec-replay <episode_id> --local-dir {dataset.name}" in text and str(dataset.parent) not in text and "1 episode," in text and "2 episodes," in text
    with pytest.raises(ValueError, match="(?i)config"):  # no silent default: datasets asks for a config
        _load(dataset)


def test_discarded_empty_and_corrupt(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    good = recordings.copy(spool, "BreakoutNoFrameskip-v4", 70, 1)
    discarded = record_episode(spool, "BreakoutNoFrameskip-v4", 70, seed=2, end_reason="discarded")
    corrupt = recordings.copy(spool, "BreakoutNoFrameskip-v4", 70, 3)
    chunk = chunk_path(corrupt, "obs/frame", 0)
    chunk.write_bytes(b"not zstd at all")
    dataset = tmp_path / "dataset"
    out = _upload_local(spool, dataset, tmp_path)
    assert out.startswith("1 uploaded") and "1 quarantined" in out
    assert (spool / UPLOADED_LOCAL_AREA / good.name).is_dir()
    assert discarded.is_dir()  # left in place, never uploaded
    assert discarded.stem not in local_index(dataset)
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
    column = encoding.encode_action_column(desc, leaves)
    values = column.to_pylist()
    assert values[0]["binary"] == [1, 0, 1] and values[1]["continuous"][1] == leaves["continuous"][1][1].tolist()
    back = layout.decode_action_value(desc, values[1])
    assert back["binary"].dtype == np.int8 and np.array_equal(back["continuous"], leaves["continuous"][1])
    assert layout.decode_action_value({"type": "Discrete", "n": 4, "start": 0}, 3) == 3


def test_batches_shards_row_groups_and_streaming(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    import pyarrow.parquet as pq

    long = recordings.copy(spool, "BreakoutNoFrameskip-v4", 1100, 4)
    short = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, s) for s in (5, 6)]
    total = sum(Episode(p).length for p in (long, *short))
    dataset = tmp_path / "dataset"
    out = _upload_local(spool, dataset, tmp_path, "--batch-episodes", "2")
    assert out.startswith("3 uploaded")
    shards = sorted((dataset / "data" / "breakoutnoframeskip-v4").rglob("*.parquet"))
    assert len(shards) == 2 and len(sorted((dataset / "meta" / "episodes").rglob("*.parquet"))) == 2
    for shard in shards:
        meta = pq.read_metadata(shard)
        assert all(meta.row_group(i).num_rows <= 1000 for i in range(meta.num_row_groups))
    info = json.loads((dataset / layout.INFO_PATH).read_text())["configs"]["breakoutnoframeskip-v4"]
    assert (info["episodes"], info["shards"], info["steps"]) == (3, 2, total)
    index = local_index(dataset)
    assert set(index) == {long.stem, *(p.stem for p in short)}
    stream = datasets.load_dataset(str(dataset), "breakoutnoframeskip-v4", split="train", streaming=True)
    assert sum(1 for _ in stream) == total
    # a rerun repairs a missing card
    (dataset / "README.md").unlink()
    assert _upload_local(spool, dataset, tmp_path).startswith("0 uploaded")
    assert f"| **all** | 3 | {total} |" in (dataset / "README.md").read_text()


def test_row_groups_stay_under_the_limit_across_episodes(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    import pyarrow.parquet as pq

    from gymrec.uploader.convert import ConvertOptions, convert_episode
    from gymrec.uploader.shards import build_batch

    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 70, s) for s in (1, 2)]
    options = ConvertOptions(workers=1, row_group_rows=50)
    converted = [convert_episode(Episode(p), tmp_path / p.stem, options) for p in sealed]
    batch = build_batch(converted, tmp_path / "batch", options)
    (part,) = batch.parts.values()
    meta = pq.read_metadata(batch.files[part.data_file])
    sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert max(sizes) <= 50 and sum(sizes) == sum(c.length for c in converted)
    index = pq.read_table(batch.files[part.index_file]).to_pylist()
    table = pq.read_table(batch.files[part.data_file], columns=["episode_id", "step"])
    for row in index:  # each index row points at exactly its episode's rows, in step order
        rows = table.slice(row["row_start"], row["row_count"]).to_pylist()
        assert [r["episode_id"] for r in rows] == [row["episode_id"]] * row["length"]
        assert [r["step"] for r in rows] == list(range(row["length"]))


@pytest.mark.parametrize(("setup", "needle"), [
    (lambda d: (d / "meta").mkdir(parents=True) or (d / "meta" / "info.json").write_text('{"format_version": 4}'),
     "format_version 4"),
    (lambda d: (d / "meta" / "episodes").mkdir(parents=True) or (d / "meta" / "episodes" / "a.json").write_text("{}"),
     "format-1"),
])  # fmt: skip
def test_other_format_versions_are_refused(recordings: RecordingCache, tmp_path: Path, spool: Path, setup: object, needle: str) -> None:
    from tests.replay_helpers import replay_cli

    sealed = recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, 1)
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    setup(dataset)  # type: ignore[operator]
    before = {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file()}
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset)], tmp_path, clean_env(HOME=str(tmp_path)))
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and needle in lines[0], done.stderr
    assert sealed.is_dir() and {p: p.read_bytes() for p in dataset.rglob("*") if p.is_file() and p.name != ".gymrec.lock"} == before
    replayed = replay_cli(["--local-dir", str(dataset), "--all"])
    assert replayed.returncode == 2 and needle in replayed.stderr and "Traceback" not in replayed.stderr


def test_sigterm_commits_the_pending_batch(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    from uploader_helpers import daemon_until

    sealed = recordings.copy(spool, "BreakoutNoFrameskip-v4", 40, 8)
    dataset = tmp_path / "dataset"
    args = ["--spool", str(spool), "--local-dir", str(dataset), "--commit-every", "3600"]

    def claimed() -> bool:
        return (spool / "claimed").is_dir() and any((spool / "claimed").glob("*.zarr"))

    code, out, err = daemon_until(args, tmp_path, clean_env(HOME=str(tmp_path)), claimed, "claimed the episode")
    assert code == 0, err
    assert out.startswith("1 uploaded") and sealed.stem in local_index(dataset)


def test_compact_merges_shards_and_keeps_every_episode(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    from tests.replay_helpers import replay_cli

    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 40, s) for s in (1, 2, 3)]
    dataset = tmp_path / "dataset"
    _upload_local(spool, dataset, tmp_path, "--batch-episodes", "1")
    before = local_index(dataset)
    assert len(list((dataset / "data").rglob("*.parquet"))) == 3
    done = run_uploader(["compact", "--local-dir", str(dataset)], tmp_path, clean_env(HOME=str(tmp_path)))
    assert done.returncode == 0 and "3 shards merged into 1" in done.stdout, done.stderr
    assert len(list((dataset / "data").rglob("*.parquet"))) == 1 and len(list((dataset / "meta" / "episodes").rglob("*.parquet"))) == 1
    after = local_index(dataset)
    assert set(after) == set(before) == {p.stem for p in sealed}
    assert all(after[e]["final_observation_hash"] == before[e]["final_observation_hash"] for e in after)
    info = json.loads((dataset / layout.INFO_PATH).read_text())["configs"]["breakoutnoframeskip-v4"]
    assert (info["episodes"], info["shards"]) == (3, 1)
    assert _load(dataset).num_rows == sum(Episode(spool / UPLOADED_LOCAL_AREA / p.name).length for p in sealed)
    replayed = replay_cli(["--local-dir", str(dataset), "--all"])
    assert replayed.returncode == 0 and replayed.stdout.count("identical") == 3, replayed.stdout + replayed.stderr
    again = run_uploader(["compact", "--local-dir", str(dataset)], tmp_path, clean_env(HOME=str(tmp_path)))
    assert again.returncode == 0 and "0 shards merged" in again.stdout


def test_a_frame_that_does_not_match_its_hash_is_quarantined(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    from tests.replay_helpers import read_row, rewrite_rows

    good = recordings.copy(spool, "BreakoutNoFrameskip-v4", 40, 1)
    bad = recordings.copy(spool, "BreakoutNoFrameskip-v4", 40, 2)
    frame = np.asarray(read_row(bad, "obs/frame", 7)).copy()
    frame[0, 0, 0] ^= 1  # one flipped bit, stored as a valid chunk: only the hash can tell
    rewrite_rows(bad, "obs/frame", 7, frame)
    dataset = tmp_path / "dataset"
    out = _upload_local(spool, dataset, tmp_path)
    assert out.startswith("1 uploaded") and "1 quarantined" in out
    assert set(local_index(dataset)) == {good.stem}
    reason = (spool / QUARANTINE_AREA / (bad.stem + REASON_SUFFIX)).read_text()
    assert "step 7 of obs/frame does not match its stored hash" in reason
