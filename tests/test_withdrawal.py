"""A study participant's withdrawal (issue 24): their episodes leave the spool at once, and the dataset
(a local one and a repo on the suite's Hub) at the uploader's next commit, with the real clients.

Two participants: A's episodes sit in a shard beside B's and in a shard of their own. After
``gymrec-uploader withdraw A``, the next upload removes exactly A's rows and index entries in one commit;
B's still load with ``datasets.load_dataset`` and replay; A's spool copies are gone. A crash between the
request and the deletions is finished by the uploader; a bad hash and a foreign request file are refused
with nothing deleted.
"""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import datasets
import pyarrow.parquet as pq
import pytest
from uploader_helpers import clean_env, index_rows_of, local_files, run_uploader, spool_frames

from gymrec.replay.verify import VerifyOptions, verify
from gymrec.shared.dataset import layout
from gymrec.shared.dataset.index import DatasetIndex
from gymrec.shared.dataset.reader import DatasetSource, LocalFiles
from gymrec.shared.errors import WithdrawalError
from gymrec.shared.spool import withdrawals
from gymrec.shared.spool.directory import UPLOADED_AREA, UPLOADED_LOCAL_AREA
from gymrec.shared.spool.episode import episode_attributes
from gymrec.uploader.config import UploaderConfig
from gymrec.uploader.convert import ConvertOptions, preview_steps, preview_strip
from gymrec.uploader.daemon import Uploader
from tests.replay_helpers import copy_episode, record_episode

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
TOKEN = "hf_test_token"  # conftest's hub fixture
REPO = "tester/gymrec-study"
CONFIG = "breakoutnoframeskip-v4"
A = "a1" * 16  # the participant who withdraws
B = "b2" * 16


def _as_participant(src: Path, spool: Path, participant: str, new_id: str | None = None) -> Path:
    """A copy of ``src`` under a new id, recorded as ``participant``'s (as gymrec-serve records it)."""
    from gymrec.shared.spool.checksums import resign

    copy = copy_episode(src, spool, new_id)
    meta_path = copy / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"] = resign(meta["attributes"] | {"participant": participant})
    meta_path.write_text(json.dumps(meta))
    return copy


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    spool = tmp_path_factory.mktemp("recordings")
    return record_episode(spool, "BreakoutNoFrameskip-v4", 20, 1), record_episode(spool, "BreakoutNoFrameskip-v4", 30, 2)


class Target:
    """A local dataset, or a repo on the suite's Hub, uploaded to in-process by the real uploader."""

    def __init__(self, tmp: Path, hub: Any | None) -> None:
        self.tmp, self.hub = tmp, hub
        self.dataset = tmp / "dataset"

    def upload(self, spool: Path) -> Any:
        config = UploaderConfig(spool=spool, local_dir=self.dataset, local_only=self.hub is None, once=True, nice=0,
                                repo_id=REPO if self.hub else None, endpoint=self.hub.endpoint if self.hub else None,
                                token=TOKEN if self.hub else None, convert=ConvertOptions(workers=1))  # fmt: skip
        return Uploader(config, threading.Event()).run()

    def files(self) -> dict[str, bytes]:
        return local_files(self.dataset) if self.hub is None else self.hub.files(REPO)

    def commits(self) -> int:
        return len(self.hub.commits(REPO)) if self.hub else 0


@pytest.fixture(params=["local", "hub"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """The suite's Hub server (conftest's ``hub``) or a local dataset."""
    return Target(tmp_path, request.getfixturevalue("hub") if request.param == "hub" else None)


def _two_participants(recordings: tuple[Path, Path], spool: Path, target: Target) -> dict[str, list[str]]:
    """A1 and B1 uploaded in one batch (one shard: A1 first, so the config's preview shows A1), then A2
    alone (a shard of its own)."""
    a1 = _as_participant(recordings[0], spool, A, "1a000000-0000-4000-8000-000000000001")
    b1 = _as_participant(recordings[1], spool, B, "2b000000-0000-4000-8000-000000000002")
    assert len(target.upload(spool).uploaded) == 2
    a2 = _as_participant(recordings[1], spool, A)
    assert len(target.upload(spool).uploaded) == 1
    return {A: [a1.stem, a2.stem], B: [b1.stem]}


def _pixels(png: bytes) -> bytes:
    from PIL import Image

    return Image.open(io.BytesIO(png)).tobytes()


def _data_rows(files: dict[str, bytes]) -> dict[str, int]:
    """{episode id: its rows} over every data shard."""
    out: dict[str, int] = {}
    for path, blob in files.items():
        if path.startswith(layout.DATA_DIR + "/"):
            for eid in pq.read_table(io.BytesIO(blob), columns=["episode_id"]).column(0).to_pylist():
                out[eid] = out.get(eid, 0) + 1
    return out


def test_the_next_commit_removes_exactly_the_participants_rows(target: Target, spool: Path, recordings: tuple[Path, Path]) -> None:
    ids = _two_participants(recordings, spool, target)
    before = target.files()
    assert set(index_rows_of(before)) == {*ids[A], *ids[B]}
    receipt = withdrawals.request_withdrawal(spool, A)
    assert sorted(receipt.deleted) == sorted(ids[A]) and not receipt.live
    area = spool / (UPLOADED_LOCAL_AREA if target.hub is None else UPLOADED_AREA)
    assert not [p for p in area.iterdir() if p.name.split(".")[0] in ids[A]], "copies and receipts gone"
    assert (area / f"{ids[B][0]}.zarr").is_dir(), "the other participant's copy stays"
    commits = target.commits()
    assert target.files() == before, "the dataset changes at the uploader's next commit, not before"

    summary = target.upload(spool)
    assert summary.withdrawn == 2 and not summary.failed
    after = target.files()
    index = index_rows_of(after)
    assert set(index) == set(ids[B]) and all(len(rows) == 1 for rows in index.values())
    assert index[ids[B][0]][0]["participant"] == B
    assert _data_rows(after) == {ids[B][0]: 30}
    info = json.loads(after[layout.INFO_PATH])["configs"][CONFIG]
    assert (info["episodes"], info["steps"], info["shards"]) == (1, 30, 1)
    assert "1 episode" in after[layout.CARD_PATH].decode() or "30" in after[layout.CARD_PATH].decode()
    b_frames = spool_frames(area / f"{ids[B][0]}.zarr")[0]  # the preview is redrawn from B's episode
    expected = preview_strip([b_frames[t] for t in sorted(preview_steps(30))])
    assert _pixels(after[layout.preview_path(CONFIG)]) == _pixels(expected) != _pixels(before[layout.preview_path(CONFIG)])
    name = REPO if target.hub is not None else withdrawals.LOCAL_TARGET + str(target.dataset)
    assert withdrawals.is_applied(spool, A, name), "recorded as applied, durably"
    one = commits + (target.hub is not None)
    assert target.commits() == one, "one commit"
    assert target.upload(spool).withdrawn == 0 and target.commits() == one, "applied once, not redone"
    if target.hub is None:  # B's episode still loads and replays bit for bit
        ds = datasets.load_dataset(str(target.dataset), CONFIG, split="train", cache_dir=str(target.tmp / "hf-cache"))
        assert set(ds["episode_id"]) == set(ids[B]) and ds.num_rows == 30
        source = DatasetSource(DatasetIndex(LocalFiles(target.dataset)), ids[B][0])
        assert verify(source, VerifyOptions(diff_dir=target.tmp)).status == "identical"

    withdrawals.request_withdrawal(spool, B)  # the last participant: the config goes, with its preview
    assert target.upload(spool).withdrawn == 1
    left = target.files()
    assert json.loads(left[layout.INFO_PATH])["configs"] == {}
    assert not [p for p in left if p.startswith((layout.DATA_DIR, layout.INDEX_DIR, layout.PREVIEW_DIR))], sorted(left)


def test_a_crash_between_request_and_deletion_is_finished_by_the_uploader(
        tmp_path: Path, spool: Path, recordings: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    target = Target(tmp_path, None)
    ids = _two_participants(recordings, spool, target)
    late = _as_participant(recordings[0], spool, A)  # sealed, not uploaded yet
    calls = []

    def crash(episode: Path) -> str | None:  # the process dies at its first deletion
        calls.append(episode)
        raise OSError("injected crash")

    with monkeypatch.context() as patch:
        patch.setattr(withdrawals, "delete_episode", crash)
        with pytest.raises(OSError, match="injected"):
            withdrawals.request_withdrawal(spool, A)
    assert calls and withdrawals.request_path(spool, A).is_file(), "the request is durable before any deletion"
    assert late.is_dir()
    summary = target.upload(spool)  # the uploader finishes it: deletes, never uploads the late one, removes rows
    assert summary.uploaded == [] and summary.withdrawn == 2
    assert not late.exists() and not [p for p in (spool / UPLOADED_LOCAL_AREA).iterdir() if p.name.split(".")[0] in ids[A]]
    assert set(index_rows_of(target.files())) == set(ids[B])
    assert json.loads(withdrawals.request_path(spool, A).read_text())["swept_at"] is not None
    again = withdrawals.request_withdrawal(spool, A)  # idempotent
    assert again.deleted == () and again.request == withdrawals.request_path(spool, A)


def test_a_later_recording_of_a_withdrawn_participant_is_never_uploaded(tmp_path: Path, spool: Path,
                                                                         recordings: tuple[Path, Path]) -> None:
    target = Target(tmp_path, None)
    withdrawals.request_withdrawal(spool, A)
    late = _as_participant(recordings[0], spool, A)  # sealed by a session that was still running
    other = _as_participant(recordings[1], spool, B)
    summary = target.upload(spool)
    assert summary.uploaded == [other.stem] and not late.exists()
    assert set(index_rows_of(target.files())) == {other.stem}


@pytest.mark.parametrize("bad", ["NOT-A-HASH", "../../etc", "A1" * 16, "ab", "a1" * 80, ""])
def test_a_bad_hash_is_refused_and_nothing_is_deleted(spool: Path, recordings: tuple[Path, Path], bad: str) -> None:
    episode = _as_participant(recordings[0], spool, A)
    with pytest.raises(WithdrawalError, match="not a participant hash"):
        withdrawals.request_withdrawal(spool, bad)
    assert episode.is_dir() and not (spool / withdrawals.WITHDRAWALS_AREA).exists()


def test_the_cli_withdraws_and_refuses_a_bad_hash_with_exit_2(tmp_path: Path, spool: Path, recordings: tuple[Path, Path]) -> None:
    episode = _as_participant(recordings[0], spool, A)
    env = clean_env(HOME=str(tmp_path))
    bad = run_uploader(["withdraw", "xyz", "--spool", str(spool)], tmp_path, env)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr, bad.stderr
    assert "not a participant hash" in bad.stderr and episode.is_dir()
    good = run_uploader(["withdraw", A, "--spool", str(spool)], tmp_path, env)
    assert good.returncode == 0 and "1 episode(s) deleted" in good.stdout, good.stderr
    assert not episode.exists()


def test_a_foreign_file_where_the_request_goes_is_refused_not_overwritten(spool: Path, recordings: tuple[Path, Path]) -> None:
    episode = _as_participant(recordings[0], spool, A)
    folder = spool / withdrawals.WITHDRAWALS_AREA
    folder.mkdir()
    foreign = folder / f"{A}.json"
    for content in (b"someone's notes\n", json.dumps({"kind": "other", "participant": A}).encode()):
        foreign.write_bytes(content)
        with pytest.raises(WithdrawalError, match="not a gymrec withdrawal request"):
            withdrawals.request_withdrawal(spool, A)
        assert foreign.read_bytes() == content and episode.is_dir()
    assert withdrawals.requests(spool) == [], "the uploader skips it (with a warning) and goes on"
    assert A in withdrawals.withdrawn(spool), "... but never uploads that participant meanwhile"


def test_a_live_recording_is_left_alone(spool: Path, recordings: tuple[Path, Path]) -> None:
    """A ``.partial`` whose writer holds its lock is not deleted; an orphaned one is."""
    from gymrec.shared.spool.directory import WriterLock

    live = _as_participant(recordings[0], spool, A)
    live = live.rename(live.with_suffix(".partial"))
    orphan = _as_participant(recordings[1], spool, A)
    orphan = orphan.rename(orphan.with_suffix(".partial"))
    assert episode_attributes(live).participant == A
    with WriterLock(live / "writer.lock", shared=True) as lock:
        assert lock.try_acquire()
        receipt = withdrawals.request_withdrawal(spool, A)
        assert receipt.live == (live.stem,) and receipt.deleted == (orphan.stem,)
        assert live.is_dir() and not orphan.exists()
    assert json.loads(receipt.request.read_text())["swept_at"] is None, "left pending for the uploader"
    assert withdrawals.request_withdrawal(spool, A).deleted == (live.stem,)  # its writer is gone now
    shutil.rmtree(spool / withdrawals.WITHDRAWALS_AREA)


def test_planned_commits_stay_within_the_hubs_files_per_commit() -> None:
    from gymrec.uploader import withdraw
    from gymrec.uploader.compact import Shard

    found = {Shard(config, f"{i:032x}", 0): frozenset({f"e{i}"}) for config in ("a", "b") for i in range(60)}
    planned = withdraw.commits(found)
    assert [s for commit in planned for group in commit for s in group] == sorted(found, key=lambda s: (s.config, s.shard))
    assert all(sum(2 * len(g) + 3 for g in commit) <= withdraw.MAX_OPERATIONS for commit in planned)
    assert all(len({s.config for s in g}) == 1 for commit in planned for g in commit)
    assert withdraw.commits({}) == []


STRACE = shutil.which("strace")


@pytest.mark.skipif(STRACE is None, reason="strace is not installed (apt-get install strace)")
def test_a_kill_during_the_withdrawal_is_finished_by_a_rerun(tmp_path: Path, spool: Path, recordings: tuple[Path, Path]) -> None:
    """SIGKILL (strace) at a rename or unlink of ``gymrec-uploader withdraw``: right after the request,
    mid-deletion; every one of them under GYMREC_STRESS=1. A rerun deletes exactly A's episodes."""
    import os
    import subprocess

    from uploader_helpers import BIN

    points = [("rename", 3), ("unlink", 4)]  # the first episode's rename; inside its removal
    if os.environ.get("GYMREC_STRESS", "") not in ("", "0"):
        points = [(call, n) for call in ("rename", "unlink", "link") for n in range(1, 12)]
    template = tmp_path / "template"
    mine = [_as_participant(recordings[i], template, A).name for i in (0, 1)]
    theirs = _as_participant(recordings[1], template, B).name
    env = clean_env(HOME=str(tmp_path), PYTHONDONTWRITEBYTECODE="1")  # no pyc renames of its own
    killed = 0
    for call, n in points:
        shutil.rmtree(spool)
        shutil.copytree(template, spool)
        cut = subprocess.run([str(STRACE), "-f", "-o", "/dev/null", "-e", f"inject={call}:signal=KILL:when={n}",
                              str(BIN / "gymrec-uploader"), "withdraw", A, "--spool", str(spool)],
                             cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
        if cut.returncode == 0:
            continue  # fewer such calls than n: nothing was cut
        assert cut.returncode == -9 or cut.returncode == 128 + 9, cut.stderr
        killed += 1
        withdrawals.request_withdrawal(spool, A)  # the rerun
        left = sorted(p.name for p in spool.iterdir())
        assert left == sorted([theirs, withdrawals.WITHDRAWALS_AREA]), f"{call} #{n}: {left}"
        assert not set(mine) & {p.name for p in spool.rglob("*")}
    assert killed >= min(2, len(points)), "strace cut no run short"


def test_a_request_made_while_the_episode_waits_in_a_batch_keeps_it_out(
        tmp_path: Path, spool: Path, recordings: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The participant withdraws after the uploader claimed and converted their episode, before the commit."""
    from gymrec.uploader.batching import Batcher

    target = Target(tmp_path, None)
    mine = _as_participant(recordings[0], spool, A)
    other = _as_participant(recordings[1], spool, B)
    add = Batcher.add

    def add_then_withdraw(self: Batcher, pending: Any) -> None:
        add(self, pending)
        if pending.converted.episode_id == mine.stem:
            withdrawals.request_withdrawal(spool, A)

    monkeypatch.setattr(Batcher, "add", add_then_withdraw)
    summary = target.upload(spool)
    assert summary.uploaded == [other.stem] and not summary.failed and not summary.quarantined
    assert set(index_rows_of(target.files())) == {other.stem}
    assert not [p for p in spool.rglob("*") if p.name.split(".")[0] == mine.stem]


def test_the_participants_questionnaire_answers_go_and_nobody_elses(spool: Path) -> None:
    study = spool / "studies" / "pilot"
    study.mkdir(parents=True)
    theirs, other = study / f"{A}.s-1.json", study / f"{B}.s-2.json"
    for path in (theirs, other):
        path.write_text("{}")
    withdrawals.request_withdrawal(spool, A)
    assert not theirs.exists(), "a withdrawn participant's answers stayed in the spool"
    assert other.read_text() == "{}"
