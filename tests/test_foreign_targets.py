"""Never touch what isn't ours (issue 21 item 2): someone else's --local-dir or Hub repo is refused in one
line (nothing changed), ``--force-adopt`` adds gymrec's files beside theirs (their README.md kept), and a
lost ``meta/info.json`` is rebuilt from every shard and index of the target, not from the batch."""

from __future__ import annotations

import json
from pathlib import Path

from hubserver import running_hub
from huggingface_hub import HfApi
from reliability_uploader_helpers import stderr_lines
from uploader_helpers import clean_env, index_rows_of, local_index, run_uploader

from gymrec.shared.dataset import layout
from gymrec.shared.spool.directory import UPLOADED_LOCAL_AREA
from tests.recording import RecordingCache

TOKEN = "hf_foreign_targets_91ab"
REPO = "tester/someone-elses"
THEIRS = {layout.CARD_PATH: b"# my notes\n", "data/train-00000.parquet": b"PAR1 not ours PAR1"}


def _local(spool: Path, dataset: Path, cwd: Path, *extra: str) -> tuple[int, str, list[str]]:
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset), *extra], cwd, clean_env(HOME=str(cwd)))
    return done.returncode, done.stdout, stderr_lines(done.stderr)


def _hub(spool: Path, endpoint: str, cwd: Path, *extra: str) -> tuple[int, str, list[str]]:
    env = clean_env(HF_TOKEN=TOKEN, HF_ENDPOINT=endpoint, HOME=str(cwd), HF_HOME=str(cwd / "hf"))
    done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO, *extra], cwd, env)
    return done.returncode, done.stdout, stderr_lines(done.stderr)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_foreign_local_dir_is_refused_then_adopted_keeping_its_files(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, 1)
    dataset = tmp_path / "ds"
    for rel, data in THEIRS.items():
        (dataset / rel).parent.mkdir(parents=True, exist_ok=True)
        (dataset / rel).write_bytes(data)
    code, out, lines = _local(spool, dataset, tmp_path)
    assert code == 2 and len(lines) == 1 and "no gymrec dataset" in lines[0] and "--force-adopt" in lines[0], lines
    assert _tree(dataset) == THEIRS and sealed.is_dir()  # not even a lock file
    code, out, lines = _local(spool, dataset, tmp_path, "--force-adopt")
    assert code == 0 and out.startswith("1 uploaded"), lines
    files = _tree(dataset)
    assert all(files[rel] == data for rel, data in THEIRS.items())  # their card and data, untouched
    assert set(local_index(dataset)) == {sealed.stem}
    assert json.loads(files[layout.INFO_PATH])["readme"] == "kept"
    recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, 2)  # and it stays adopted: no flag needed now
    code, out, lines = _local(spool, dataset, tmp_path)
    assert code == 0 and out.startswith("1 uploaded") and _tree(dataset)[layout.CARD_PATH] == THEIRS[layout.CARD_PATH], lines


def test_a_foreign_hub_repo_is_refused_then_adopted_keeping_its_card(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, 1)
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        hub.seed_repo(REPO, THEIRS)
        commits = len(hub.commits(REPO))
        code, out, lines = _hub(spool, hub.endpoint, tmp_path)
        assert code == 2 and len(lines) == 1 and "no gymrec dataset" in lines[0] and REPO in lines[0], lines
        assert len(hub.commits(REPO)) == commits and sealed.is_dir()
        code, out, lines = _hub(spool, hub.endpoint, tmp_path, "--force-adopt")
        assert code == 0 and out.startswith("1 uploaded"), lines
        files = hub.files(REPO)
        assert all(files[rel] == data for rel, data in THEIRS.items())
        assert {e: len(rows) for e, rows in index_rows_of(files).items()} == {sealed.stem: 1}


def test_a_lost_local_info_json_is_rebuilt_from_every_shard(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    for seed in (1, 2, 3):
        recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, seed)
    recordings.copy(spool, "PongNoFrameskip-v4", 30, 4)
    dataset = tmp_path / "dataset"
    code, _, lines = _local(spool, dataset, tmp_path, "--batch-episodes", "2")
    assert code == 0, lines
    info, card = (dataset / layout.INFO_PATH).read_bytes(), (dataset / layout.CARD_PATH).read_bytes()
    (dataset / layout.INFO_PATH).unlink()
    code, out, lines = _local(spool, dataset, tmp_path)
    assert code == 0 and out.startswith("0 uploaded"), lines
    assert json.loads((dataset / layout.INFO_PATH).read_bytes()) == json.loads(info)
    assert (dataset / layout.CARD_PATH).read_bytes() == card
    (dataset / layout.INFO_PATH).write_text("{")  # damaged, with a new episode in the next batch
    new = recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, 5)
    code, out, lines = _local(spool, dataset, tmp_path)
    assert code == 0 and out.startswith("1 uploaded"), lines
    configs = json.loads((dataset / layout.INFO_PATH).read_bytes())["configs"]
    assert {c: e["episodes"] for c, e in configs.items()} == {"breakoutnoframeskip-v4": 4, "pongnoframeskip-v4": 1}
    assert new.stem in local_index(dataset) and (spool / UPLOADED_LOCAL_AREA / new.name).is_dir()


def test_a_lost_hub_info_json_is_rebuilt_from_every_shard(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    for seed in (1, 2):
        recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, seed)
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        code, _, lines = _hub(spool, hub.endpoint, tmp_path, "--batch-episodes", "1")
        assert code == 0, lines
        info = json.loads(hub.files(REPO)[layout.INFO_PATH])
        HfApi(endpoint=hub.endpoint, token=TOKEN).delete_file(layout.INFO_PATH, REPO, repo_type="dataset")
        recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, 3)
        code, out, lines = _hub(spool, hub.endpoint, tmp_path)
        assert code == 0 and out.startswith("1 uploaded"), lines
        after = json.loads(hub.files(REPO)[layout.INFO_PATH])["configs"]["breakoutnoframeskip-v4"]
        before = info["configs"]["breakoutnoframeskip-v4"]
        assert (after["episodes"], after["shards"], after["steps"]) == (3, 3, before["steps"] + 30)
