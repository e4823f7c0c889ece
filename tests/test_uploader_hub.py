"""Hub mode against tests/hubserver.py with the real huggingface_hub / datasets clients."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hubserver import FaultPlan, running_hub
from reliability_uploader_helpers import (
    claims_left,
    landing,
    quarantined_ids,
    reap,
    start,
    stderr_lines,
    uploaded_ids,
    wait_for,
    waiting_ids,
)
from uploader_helpers import clean_env, index_rows_of, record_episode, run_uploader, spool_frames

from gymrec.shared.dataset import layout
from gymrec.shared.spool.directory import UPLOADED_AREA
from gymrec.uploader.claims import CLAIMED_AREA, RECEIPT_SUFFIX
from gymrec.uploader.config import UploaderConfig
from gymrec.uploader.convert import ConvertOptions
from gymrec.uploader.daemon import Uploader
from gymrec.uploader.hub import RetryPolicy
from tests.recording import RecordingCache

TOKEN = "hf_uploader_secret_7a1b"
REPO = "tester/gymrec-test"


def _env(endpoint: str, cwd: Path, token: str = TOKEN) -> dict[str, str]:
    return clean_env(HF_TOKEN=token, HF_ENDPOINT=endpoint, HOME=str(cwd), HF_HOME=str(cwd / "hf-home"))


def _metas(files: dict[str, bytes]) -> list[dict]:
    """Every index row's attributes (an episode listed twice appears twice)."""
    return [json.loads(row["attributes"]) for rows in index_rows_of(files).values() for row in rows]


# Process-wide pools that libraries start once and keep by design (zarr's IO loop, tqdm's monitor).
_LIBRARY_THREADS = ("zarr_io", "asyncio_", "tqdm_monitor")


def _thread_count() -> int:
    return sum(1 for t in threading.enumerate() if not t.name.startswith(_LIBRARY_THREADS))


def _assert_threads_back(before: int) -> None:
    deadline = time.monotonic() + 5
    while _thread_count() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _thread_count() == before, [t.name for t in threading.enumerate()]


def _card_totals(files: dict[str, bytes]) -> str:
    return files["README.md"].decode()


def test_upload_load_dataset_and_no_duplicates(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 80, s) for s in (1, 2)]
    spool_data = {p.stem: spool_frames(p) for p in sealed}
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        env = _env(hub.endpoint, tmp_path)
        done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO], tmp_path, env)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("2 uploaded")
        files = hub.files(REPO)
        commits = len(hub.commits(REPO))
        assert commits == 2  # the initial commit, then one batch holding both episodes
        for eid in spool_data:
            receipt = json.loads((spool / UPLOADED_AREA / (eid + RECEIPT_SUFFIX)).read_text())
            assert receipt["repo"] == REPO and receipt["commit"] == hub.commits(REPO)[-1].oid
            assert (spool / UPLOADED_AREA / f"{eid}.zarr").is_dir()
            assert receipt["paths"] == [layout.data_path("breakoutnoframeskip-v4", receipt["batch_id"]),
                                        layout.frames_path("breakoutnoframeskip-v4", receipt["batch_id"]),
                                        layout.index_path("breakoutnoframeskip-v4", receipt["batch_id"])]
            assert all(path in files for path in receipt["paths"])
        assert sorted(m["episode_id"] for m in _metas(files)) == sorted(spool_data)
        info = json.loads(files[layout.INFO_PATH])
        assert info["format_version"] == layout.FORMAT_VERSION and info["configs"]["breakoutnoframeskip-v4"]["episodes"] == 2
        code = (  # the step rows through datasets, the frames from their blocks by range reads, each hash checked
            "import os, sys, json, datasets\n"
            "from gymrec.shared.dataset.frames import FrameStore\n"
            "from gymrec.shared.dataset.index import DatasetIndex\n"
            "from gymrec.shared.dataset.reader import HubFiles\n"
            f"ds = datasets.load_dataset({REPO!r}, 'breakoutnoframeskip-v4', split='train')\n"
            f"index = DatasetIndex(HubFiles({REPO!r}, os.environ['HF_ENDPOINT'], os.environ['HF_TOKEN']))\n"
            "rows = {}\n"
            "for eid in ds['episode_id']: rows[eid] = rows.get(eid, 0) + 1\n"
            "with FrameStore(index) as store:\n"
            "    out = {e: [f.tobytes().hex() for f in store.episode(e, verify=True).read(0, n)] for e, n in rows.items()}\n"
            "json.dump(out, sys.stdout)\n"
        )
        loaded = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        frames_by_episode = json.loads(loaded.stdout)
        for eid, (frames, _final, _attrs) in spool_data.items():
            got = frames_by_episode[eid]
            assert len(got) == len(frames)
            assert all(bytes.fromhex(g) == f.tobytes() for g, f in zip(got, frames, strict=True))
        # Re-running: same files, no new commits; re-queueing an uploaded episode is a no-op too.
        for eid in spool_data:
            (spool / UPLOADED_AREA / f"{eid}.zarr").rename(spool / f"{eid}.zarr")
        again = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO], tmp_path, env)
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith("0 uploaded to the Hub, 2 already there")
        assert len(hub.commits(REPO)) == commits and hub.files(REPO) == files
        # the token is nowhere: output, spool, dataset
        assert TOKEN not in done.stdout + done.stderr + again.stdout + again.stderr
        assert all(TOKEN.encode() not in data for data in files.values())
        assert all(TOKEN.encode() not in p.read_bytes() for p in spool.rglob("*") if p.is_file())


def test_two_uploaders_race_exactly_once(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 40, s) for s in range(6)]
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        env = _env(hub.endpoint, tmp_path)
        exe = Path(sys.executable).parent / "gymrec-uploader"
        args = [str(exe), "--spool", str(spool), "--once", "--repo-id", REPO, "--workers", "1"]
        procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            outs = [p.communicate(timeout=240) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
        uploaded = sum(int(o[0].split()[0]) for o in outs)
        assert uploaded == len(sealed)
        files = hub.files(REPO)
        metas = _metas(files)
        assert sorted(m["episode_id"] for m in metas) == sorted(p.stem for p in sealed)
        episode_commits = [c for c in hub.commits(REPO)[1:]]
        assert 1 <= len(episode_commits) <= 2  # one batch per uploader at most: no empty or duplicate commits
        card = _card_totals(files)
        steps = sum(m["length"] for m in metas)
        assert f"| **all** | {len(sealed)} | {steps} |" in card
        yaml.safe_load(card.split("---\n")[1])
        assert not any((spool / CLAIMED_AREA).iterdir())


def test_faults_are_retried_in_process(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 40, s) for s in range(4)]
    threads_before = _thread_count()
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        hub.faults = FaultPlan(rate=0.25, kinds=("500", "503", "429", "drop", "drop_after"), seed=3, retry_after=0)
        config = UploaderConfig(
            spool=spool, local_dir=tmp_path / "unused", repo_id=REPO, endpoint=hub.endpoint, token=TOKEN, once=True,
            convert=ConvertOptions(workers=2), retry=RetryPolicy(attempts=12, base_delay=0.02, max_delay=0.3), nice=0,
        )  # fmt: skip
        summary = Uploader(config, threading.Event()).run()
        injected = hub.injected
        hub.faults = None
        assert sum(injected.values()) >= 3, injected
        assert not summary.failed and len(summary.uploaded) + len(summary.already) == len(sealed)
        metas = _metas(hub.files(REPO))
        assert sorted(m["episode_id"] for m in metas) == sorted(p.stem for p in sealed)
        card = _card_totals(hub.files(REPO))
        assert f"| **all** | {len(sealed)} | {sum(m['length'] for m in metas)} |" in card
    _assert_threads_back(threads_before)


def test_daemon_watches_and_stops_cleanly(tmp_path: Path, spool: Path) -> None:
    threads_before = _thread_count()
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        config = UploaderConfig(
            spool=spool, local_dir=tmp_path / "unused", repo_id=REPO, endpoint=hub.endpoint, token=TOKEN,
            convert=ConvertOptions(workers=2), rescan_interval=0.5, heartbeat_interval=0.2, nice=0, commit_every=0.5,
        )  # fmt: skip
        stop = threading.Event()
        uploader = Uploader(config, stop)
        runner = threading.Thread(target=uploader.run, name="gymrec-test-daemon")
        runner.start()
        try:
            sealed = record_episode(spool, "BreakoutNoFrameskip-v4", 60, seed=9)  # recorded live: the daemon watches it
            deadline = time.monotonic() + 60
            while sealed.stem not in index_rows_of(hub.files(REPO) if hub.has_repo(REPO) else {}):
                assert time.monotonic() < deadline, "the daemon never uploaded the new episode"
                time.sleep(0.2)
        finally:
            stop.set()
            runner.join(timeout=30)
        assert not runner.is_alive()
        assert uploader.summary.uploaded == [sealed.stem]
    _assert_threads_back(threads_before)


@pytest.mark.parametrize("revoked", [False, True])
def test_bad_token_stops_and_loses_nothing(recordings: RecordingCache, tmp_path: Path, spool: Path, revoked: bool) -> None:
    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, s) for s in (1, 2)]
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        hub.revoked = revoked
        token = TOKEN if revoked else "hf_wrong_token_123"
        done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO], tmp_path, _env(hub.endpoint, tmp_path, token))
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "HF_TOKEN" in lines[0] and "hf auth login" in lines[0], done.stderr
        assert token not in done.stderr + done.stdout
        assert all(p.is_dir() for p in sealed)  # still waiting, unclaimed
        assert not (spool / CLAIMED_AREA).exists() or not any((spool / CLAIMED_AREA).iterdir())


def test_dead_claim_is_taken_over(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    from gymrec.uploader.claims import Claimer

    sealed = recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, 1)
    dead = Claimer(spool, "otherhost_p1_abcdef", stale_after=300, include_local=False)
    a = dead.try_claim(sealed)
    assert a is not None and dead.try_claim(sealed) is None  # a rename: exactly one winner
    live = Claimer(spool, "thishost_p2_123456", stale_after=300, include_local=False)
    assert live.stale_claims() == []  # another host, fresh heartbeat: not ours to take
    old = time.time() - 1000
    import os

    os.utime(a.path, (old, old))
    assert live.stale_claims() == [a.path]
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO], tmp_path, _env(hub.endpoint, tmp_path))
        assert done.returncode == 0, done.stderr
        assert list(index_rows_of(hub.files(REPO))) == [sealed.stem]
    assert not a.touch()  # the old owner learns it lost the claim
    assert np.all([not any((spool / CLAIMED_AREA).iterdir())])


def test_compact_on_the_hub_in_one_commit(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = [recordings.copy(spool, "BreakoutNoFrameskip-v4", 30, s) for s in (1, 2, 3)]
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        env = _env(hub.endpoint, tmp_path)
        done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO, "--batch-episodes", "1"], tmp_path, env)
        assert done.returncode == 0, done.stderr
        commits = len(hub.commits(REPO))
        shards = [p for p in hub.files(REPO) if layout.is_index_path(p)]
        assert len(shards) == 3
        compacted = run_uploader(["compact", "--repo-id", REPO], tmp_path, env)
        assert compacted.returncode == 0 and "3 shards merged into 1" in compacted.stdout, compacted.stderr
        files = hub.files(REPO)
        assert len(hub.commits(REPO)) == commits + 1
        assert len([p for p in files if layout.is_index_path(p)]) == 1
        assert sorted(m["episode_id"] for m in _metas(files)) == sorted(p.stem for p in sealed)
        info = json.loads(files[layout.INFO_PATH])["configs"]["breakoutnoframeskip-v4"]
        assert (info["episodes"], info["shards"]) == (3, 1)
        assert f"| **all** | 3 | {info['steps']} |" in files["README.md"].decode()


# --- the Hub down: one state, one line per change (issue 13 item 7, issue 10 item 8) -------------------

# Small so that a test takes seconds: a call gives up after 1 s, probes double from 0.05 s up to 0.2 s.
FAST_OUTAGE = ["--timeout", "1", "--backoff-base", "0.05", "--backoff-cap", "0.2"]
WATCHING = "gymrec-uploader: watching"


def _record_aside(tmp_path: Path, name: str, seeds: tuple[int, ...]) -> list[Path]:
    """Sealed episodes recorded outside the spool, to be moved in together (the daemon sees them at once)."""
    return [record_episode(tmp_path / name, "BreakoutNoFrameskip-v4", 20, seed=s) for s in seeds]


def _move_in(episodes: list[Path], spool: Path) -> set[str]:
    for path in episodes:
        path.rename(spool / path.name)
    return {p.stem for p in episodes}


def test_once_against_a_killed_hub_is_one_line_and_keeps_the_queue(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = {recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, s).stem for s in (1, 2, 3)}
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        endpoint = hub.endpoint
    # the Hub is gone: nothing listens on its port any more
    done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO, *FAST_OUTAGE], tmp_path,
                        _env(endpoint, tmp_path), timeout=60)
    lines = stderr_lines(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"gymrec-uploader: error: Hub at {endpoint} unreachable (ConnectError"), lines
    assert "; 3 episodes stay queued (" in lines[0] and lines[0].count(endpoint) == 1, lines
    assert waiting_ids(spool) == sealed and claims_left(spool) == [] and quarantined_ids(spool) == set()
    # HF_HUB_OFFLINE=1: huggingface_hub sends nothing, so there is nothing to retry (-v would show a retry)
    offline = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO, "-v"], tmp_path,
                           _env(endpoint, tmp_path) | {"HF_HUB_OFFLINE": "1"}, timeout=60)
    lines = stderr_lines(offline.stderr)
    assert offline.returncode == 2 and not [line for line in lines if "; retry " in line], offline.stderr
    assert lines[-1] == (f"gymrec-uploader: error: Hub at {endpoint} unreachable (HF_HUB_OFFLINE is set); "
                         "3 episodes stay queued (this machine may be offline: check the network and "
                         "--endpoint / HF_ENDPOINT, then run again)"), lines
    assert waiting_ids(spool) == sealed and claims_left(spool) == []


def test_once_when_the_hub_dies_mid_run_tries_one_call_not_one_per_episode(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    sealed = {recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, s).stem for s in (1, 2, 3, 4)}
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        endpoint = hub.endpoint
        hub.go_down_after("commit", 1)  # the first batch lands, then the Hub is gone
        done = run_uploader(["--spool", str(spool), "--once", "--repo-id", REPO, "--batch-episodes", "1", *FAST_OUTAGE],
                            tmp_path, _env(endpoint, tmp_path), timeout=60)
        dropped = hub.injected
        hub.come_back()
        landed = landing(hub, REPO)
    lines = stderr_lines(done.stderr)
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert f"Hub at {endpoint} unreachable (" in lines[0] and "; 3 episodes stay queued (" in lines[0], lines
    assert done.stdout.startswith("1 uploaded"), done.stdout
    # one call's retries (6 attempts at most), then nothing: the 3 queued episodes cost no request each
    assert 1 <= sum(dropped.values()) <= 6 and len(dropped) == 1, dropped
    assert set(landed.metas) == uploaded_ids(spool) and len(landed.metas) == 1 and landed.duplicates() == 0
    assert waiting_ids(spool) == sealed - set(landed.metas) and claims_left(spool) == []
    assert quarantined_ids(spool) == set()


def test_daemon_rides_out_outages_with_one_line_per_change(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    first = {recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, s).stem for s in (1, 2)}
    second, third = _record_aside(tmp_path, "aside-2", (3, 4)), _record_aside(tmp_path, "aside-3", (5,))
    with running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        endpoint, port = hub.endpoint, int(hub.endpoint.rsplit(":", 1)[1])
        args = ["--spool", str(spool), "--repo-id", REPO, "--commit-every", "0", "--rescan-interval", "0.5",
                "--workers", "1", *FAST_OUTAGE]  # fmt: skip
        err = tmp_path / "daemon.stderr"
        outage = re.escape(f"WARNING gymrec.uploader.outage: Hub at {endpoint}")
        refused = rf"{outage} unreachable \(ConnectError: [^()]*Connection refused\); "
        dropped = rf"{outage} unreachable \((RemoteProtocolError|ReadError): [^()]+\); "
        retrying = "; retrying with backoff"

        def lines() -> list[str]:
            # the outage's lines only: not the start line, nor the one line per commit (issue 22 item 4)
            return [line for line in stderr_lines(err.read_text()) if not line.startswith((WATCHING, "committed "))]

        # 0. The Hub is down before the daemon starts: it waits (it used to exit after ~27 s).
        hub.stop()
        proc = start("gymrec-uploader", args, tmp_path, _env(endpoint, tmp_path), tmp_path / "daemon")
        try:
            assert wait_for(lambda: len(lines()) >= 1, 60, poll=0.05), err.read_text()
            assert proc.poll() is None and uploaded_ids(spool) == set()
            hub.start(port)
            assert wait_for(lambda: uploaded_ids(spool) == first, 60, poll=0.05), err.read_text()
            assert wait_for(lambda: len(lines()) >= 2, 60, poll=0.05), err.read_text()
            # 1. The Hub drops every connection (and counts them): one line, however many probes follow.
            hub.faults = FaultPlan(rate=1.0, kinds=("drop",), only_writes=False)
            expected = first | _move_in(second, spool)
            assert wait_for(lambda: len(lines()) >= 3, 60, poll=0.05), err.read_text()
            probes = hub.stats["whoami"]
            assert wait_for(lambda: hub.stats["whoami"] >= probes + 4, 60, poll=0.05), "the daemon stopped probing"
            assert proc.poll() is None and len(lines()) == 3, err.read_text()
            hub.faults = None
            assert wait_for(lambda: uploaded_ids(spool) == expected, 60, poll=0.05), err.read_text()
            assert wait_for(lambda: len(lines()) >= 4, 60, poll=0.05), err.read_text()
            # 2. The Hub is killed (connections refused) while it has work, then restarted on the same port.
            hub.stop()
            expected |= _move_in(third, spool)
            assert wait_for(lambda: len(lines()) >= 5, 60, poll=0.05), err.read_text()
            assert proc.poll() is None and waiting_ids(spool) == expected - uploaded_ids(spool)
            hub.start(port)
            assert wait_for(lambda: uploaded_ids(spool) == expected, 60, poll=0.05), err.read_text()
            assert wait_for(lambda: len(lines()) >= 6, 60, poll=0.05), err.read_text()
            proc.terminate()
            assert proc.wait(timeout=60) == 0, err.read_text()
        finally:
            reap(proc)
        final = lines()
        said = stderr_lines(err.read_text())[1:]
        assert [line for line in said if not line.startswith("committed ")] == final and len(final) == 6, err.read_text()
        assert sum(line.startswith("committed ") for line in said) >= 3  # one line per commit (issue 22 item 4)
        patterns = [refused + "2 episodes stay queued" + retrying, f"{outage} reachable again; uploading 2 queued episodes",
                    dropped + "2 episodes stay queued" + retrying, f"{outage} reachable again; uploading 2 queued episodes",
                    refused + "1 episode stays queued" + retrying, f"{outage} reachable again; uploading 1 queued episode"]
        assert all(re.fullmatch(p, line) for p, line in zip(patterns, final, strict=True)), final
        landed = landing(hub, REPO)
        assert set(landed.metas) == expected and landed.duplicates() == 0
        assert all(n == 1 for n in landed.listed.values()), landed.listed
    assert waiting_ids(spool) == set() and claims_left(spool) == [] and quarantined_ids(spool) == set()
