"""Exactly once per episode id, wherever the bytes come from (issue 21 item 1), on a local dataset and
on the suite's Hub server: a spool restored from a backup, two machines holding copies of one spool,
a re-run after a crash between the commit and the receipts, and one id with other content."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hubserver import running_hub
from reliability_uploader_helpers import landing, quarantined_ids
from uploader_helpers import clean_env, index_rows_of, local_files, run_uploader

from gymrec.shared.dataset import layout
from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import resign
from gymrec.shared.spool.directory import UPLOADED_AREA, UPLOADED_LOCAL_AREA
from gymrec.uploader.claims import QUARANTINE_AREA, REASON_SUFFIX, RECEIPT_SUFFIX
from tests.recording import RecordingCache

TOKEN = "hf_exactly_once_5c2d"
REPO = "tester/gymrec-once"
CONFIG = "breakoutnoframeskip-v4"
Record = Callable[[Path, tuple[int, ...]], list[Path]]  # (spool, seeds) -> the episodes copied into it


class Target:
    """One upload target (a local dataset, or a repo on the suite's Hub) and how to read it back."""

    def __init__(self, tmp: Path, hub: Any | None) -> None:
        self.tmp, self.hub = tmp, hub
        self.dataset = tmp / "dataset"

    def upload(self, spool: Path) -> tuple[int, str, str]:
        if self.hub is None:
            args, env = ["--local-dir", str(self.dataset)], clean_env(HOME=str(self.tmp))
        else:
            args = ["--repo-id", REPO]
            env = clean_env(HF_TOKEN=TOKEN, HF_ENDPOINT=self.hub.endpoint, HOME=str(self.tmp), HF_HOME=str(self.tmp / "hf"))
        done = run_uploader(["--spool", str(spool), "--once", "--workers", "1", *args], self.tmp, env)
        return done.returncode, done.stdout, done.stderr

    def files(self) -> dict[str, bytes]:
        return local_files(self.dataset) if self.hub is None else self.hub.files(REPO)

    def listed(self) -> dict[str, int]:
        return {eid: len(rows) for eid, rows in index_rows_of(self.files()).items()}

    def episodes_in_info(self) -> int:
        return int(json.loads(self.files()[layout.INFO_PATH])["configs"][CONFIG]["episodes"])

    @property
    def uploaded_area(self) -> str:
        return UPLOADED_LOCAL_AREA if self.hub is None else UPLOADED_AREA


@pytest.fixture(params=["local", "hub"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "local":
        yield Target(tmp_path, None)
    else:
        with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
            yield Target(tmp_path, hub)


@pytest.fixture
def record(recordings: RecordingCache) -> Record:
    """Breakout episodes by seed, recorded once a session (tests/recording.py RecordingCache)."""
    return lambda spool, seeds: [recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, s) for s in seeds]


def _restore(backup: Path, spool: Path) -> None:
    shutil.rmtree(spool)
    shutil.copytree(backup, spool)


def _once_each(target: Target, expected: set[str]) -> None:
    listed = target.listed()
    assert listed == dict.fromkeys(expected, 1), listed
    assert target.episodes_in_info() == len(expected)
    if target.hub is not None:
        assert landing(target.hub, REPO).duplicates() == 0


def test_a_spool_restored_from_a_backup_publishes_each_episode_once(target: Target, spool: Path, record: Record) -> None:
    first = record(spool, (1, 2, 3))
    backup = target.tmp / "backup"
    shutil.copytree(spool, backup)
    code, out, err = target.upload(spool)
    assert code == 0 and out.startswith("3 uploaded"), err
    _restore(backup, spool)
    (new,) = record(spool, (4,))
    code, out, err = target.upload(spool)
    assert code == 0 and out.startswith("1 uploaded") and "3 already there" in out, out + err
    _once_each(target, {p.stem for p in [*first, new]})
    for p in first:  # filed as uploaded: nothing of ours waits, and the receipt names where it is
        receipt = json.loads((spool / target.uploaded_area / (p.stem + RECEIPT_SUFFIX)).read_text())
        assert receipt["already_present"] and layout.is_index_path(receipt["paths"][0])


def test_two_machines_with_copies_of_one_spool(target: Target, spool: Path, record: Record) -> None:
    eps = record(spool, (1, 2))
    other = target.tmp / "other-machine"
    shutil.copytree(spool, other)
    (extra,) = record(other, (5,))  # the second machine recorded one more before uploading
    code, out, err = target.upload(spool)
    assert code == 0 and out.startswith("2 uploaded"), err
    code, out, err = target.upload(other)
    assert code == 0 and out.startswith("1 uploaded") and "2 already there" in out, out + err
    _once_each(target, {p.stem for p in [*eps, extra]})


def test_a_rerun_after_a_crash_between_commit_and_receipts(target: Target, spool: Path, record: Record) -> None:
    eps = record(spool, (1, 2))
    code, out, err = target.upload(spool)
    assert code == 0, err
    # A crash after the commit but before the receipts and the batch manifest: the episodes are back
    # in the queue, with no trace of the batch; a new episode makes the next batch's id differ.
    area = spool / target.uploaded_area
    for p in eps:
        (area / (p.stem + RECEIPT_SUFFIX)).unlink()
        if (area / p.name).is_dir():
            (area / p.name).rename(spool / p.name)
    (new,) = record(spool, (3,))
    code, out, err = target.upload(spool)
    assert code == 0 and out.startswith("1 uploaded") and "2 already there" in out, out + err
    _once_each(target, {p.stem for p in [*eps, new]})


def _edit_attrs(episode: Path, change: Callable[[dict[str, Any]], None]) -> None:
    meta = json.loads((episode / schema.METADATA_NAME).read_text())
    change(meta["attributes"])
    meta["attributes"] = resign(meta["attributes"])
    (episode / schema.METADATA_NAME).write_text(json.dumps(meta))


def test_one_id_with_other_content_is_quarantined_not_published(target: Target, spool: Path, record: Record) -> None:
    eps = record(spool, (1, 2))
    backup = target.tmp / "backup"
    shutil.copytree(spool, backup)
    code, out, err = target.upload(spool)
    assert code == 0, err
    before = target.files()
    _restore(backup, spool)
    _edit_attrs(spool / eps[0].name, lambda a: a.update(player="someone-else"))
    code, out, err = target.upload(spool)
    assert code == 0 and "1 already there" in out and "1 quarantined" in out, out + err
    assert quarantined_ids(spool) == {eps[0].stem}
    reason = (spool / QUARANTINE_AREA / (eps[0].stem + REASON_SUFFIX)).read_text()
    assert "already published" in reason and "other content" in reason
    after = target.files()
    assert {k: v for k, v in after.items() if k != ".gymrec.lock"} == {k: v for k, v in before.items() if k != ".gymrec.lock"}
    _once_each(target, {p.stem for p in eps})


def _a_duplicated_shard(files: dict[str, bytes]) -> dict[str, bytes]:
    """What an older gymrec left after publishing a batch twice: a second copy of one shard under
    another id, and info.json counting its episodes twice."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from gymrec.uploader.index_row import INDEX_FEATURES

    index_file = sorted(p for p in files if layout.is_index_path(p))[0]
    rows = pq.read_table(io.BytesIO(files[index_file])).to_pylist()
    copy = "f" * 32
    data_file, frames_file = layout.data_path(CONFIG, copy), layout.frames_path(CONFIG, copy)
    out = io.BytesIO()
    pq.write_table(pa.Table.from_pylist([r | {layout.INDEX_DATA_FILE_COLUMN: data_file, layout.INDEX_FRAMES_FILE_COLUMN: frames_file}
                                         for r in rows], schema=INDEX_FEATURES.arrow_schema), out)  # fmt: skip
    info = json.loads(files[layout.INFO_PATH])
    entry = info["configs"][CONFIG]
    entry["episodes"] += len(rows)
    entry["steps"] += sum(r["length"] for r in rows)
    entry["shards"] += 1
    return {data_file: files[rows[0][layout.INDEX_DATA_FILE_COLUMN]], frames_file: files[rows[0][layout.INDEX_FRAMES_FILE_COLUMN]],
            layout.index_path(CONFIG, copy): out.getvalue(), layout.INFO_PATH: json.dumps(info).encode()}  # fmt: skip


def test_compaction_leaves_out_identical_duplicates(target: Target, spool: Path, record: Record) -> None:
    from tests.replay_helpers import replay_cli

    eps = record(spool, (1, 2, 3))
    code, out, err = target.upload(spool)
    assert code == 0, err
    clean_info = json.loads(target.files()[layout.INFO_PATH])["configs"][CONFIG]
    extra = _a_duplicated_shard(target.files())
    if target.hub is None:
        for rel, data in extra.items():
            (target.dataset / rel).parent.mkdir(parents=True, exist_ok=True)
            (target.dataset / rel).write_bytes(data)
        args = ["--local-dir", str(target.dataset)]
        env = clean_env(HOME=str(target.tmp))
    else:
        target.hub.seed_repo(REPO, extra)
        args = ["--repo-id", REPO]
        env = clean_env(HF_TOKEN=TOKEN, HF_ENDPOINT=target.hub.endpoint, HOME=str(target.tmp), HF_HOME=str(target.tmp / "hf"))
    assert max(target.listed().values()) == 2
    done = run_uploader(["compact", *args], target.tmp, env)
    assert done.returncode == 0 and "2 shards merged into 1" in done.stdout, done.stderr
    assert target.listed() == {p.stem: 1 for p in eps}
    after = json.loads(target.files()[layout.INFO_PATH])["configs"][CONFIG]
    assert {k: after[k] for k in ("episodes", "steps")} == {k: clean_info[k] for k in ("episodes", "steps")}
    if target.hub is None:
        replayed = replay_cli(["--local-dir", str(target.dataset), "--all"])
        assert replayed.returncode == 0 and replayed.stdout.count("identical") == 3, replayed.stdout + replayed.stderr


def test_compaction_leaves_a_truncated_shard_and_merges_the_rest(tmp_path: Path, spool: Path, record: Record) -> None:
    """Issue 21.4: a damaged shard is left as it is with one line and the corruption code (5)."""
    record(spool, (1, 2, 3))
    dataset = tmp_path / "dataset"
    env = clean_env(HOME=str(tmp_path))
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset), "--batch-episodes", "1"], tmp_path, env)
    assert done.returncode == 0, done.stderr
    victim = sorted((dataset / layout.DATA_DIR).rglob("*" + layout.SHARD_SUFFIX))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    kept = victim.read_bytes()
    done = run_uploader(["compact", "--local-dir", str(dataset)], tmp_path, env)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 5 and "2 shards merged into 1" in done.stdout, done.stdout + done.stderr
    assert len(lines) == 1 and str(victim.relative_to(dataset)) in lines[0] and "Traceback" not in done.stderr, lines
    assert victim.read_bytes() == kept and len(list((dataset / layout.DATA_DIR).rglob("*" + layout.SHARD_SUFFIX))) == 2
