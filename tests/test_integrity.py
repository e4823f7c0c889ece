"""Issue 13's reproductions, recorder and storage side: each asserts the exit code, the one line,
that nothing was deleted, and that the other episodes stay usable.

Checksummed chunks (schema_version 2), recovery that keeps every verified row and sets aside what
it cannot use, no poison pills in the spool, liveness under SIGSTOP, and chunk buffers that fit a
small /dev/shm.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import psutil
import pytest

from gymrec.shared.errors import ChunkCorruptError
from gymrec.shared.spool import schema
from gymrec.shared.spool.chunks import ArrayMeta
from gymrec.shared.spool.directory import SET_ASIDE_AREA
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import FAILED_NOTE, recover_orphans
from tests.conftest import BIN, run_cli
from tests.recording import chunk_path, record_episode
from tests.reliability_helpers import changed_files, make_orphan, one_line_problems, snapshot
from tests.spool_versions import attributes, write_attributes

ENV = "BreakoutNoFrameskip-v4"


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return record_episode(tmp_path_factory.mktemp("integrity") / "spool", ENV, 150, 1)


def _copy(episode: Path, spool: Path) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(episode, spool / episode.name))


def _chunk_files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("c.*") if p.is_file()}


def _replay_all(spool: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli("gymrec-replay", "--all", "--spool", str(spool), cwd=cwd)


def _flip_bit(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    path.write_bytes(bytes(data))


def test_every_chunk_carries_zarrs_crc32c_and_plain_zarr_verifies_it(sealed: Path) -> None:
    import zarr

    meta = json.loads((sealed / "obs" / "frame" / schema.METADATA_NAME).read_text())
    assert [c["name"] for c in meta["codecs"]] == ["bytes", "zstd", "crc32c"]
    assert Episode(sealed).attrs.schema_version == 2 == schema.SCHEMA_VERSION
    assert set(attributes(sealed)[schema.CHECKSUMS_ATTR]["metadata"]) >= {"obs/frame/zarr.json", "reward/zarr.json"}
    assert zarr.open_group(str(sealed), mode="r")["reward"].shape == (150,)


def test_a_hand_renamed_sealed_episode_keeps_every_step(sealed: Path, tmp_path: Path) -> None:
    """Issue 13.1: a sealed episode renamed back to .partial lost 22 steps and its chunk c/2."""
    spool = tmp_path / "spool"
    partial = _copy(sealed, spool).rename(spool / schema.partial_name(Episode(sealed).id))
    chunks = _chunk_files(partial)
    proc = _replay_all(spool, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"recovered {sealed.name}: 150 steps checked, 0 rebuilt" in proc.stderr
    assert "identical" in proc.stdout
    episode = Episode(spool / sealed.name)
    assert episode.length == 150 and _chunk_files(episode.path) == chunks, "no chunk deleted"


def test_a_flipped_bit_in_a_frame_chunk_is_reported_as_corruption(sealed: Path, tmp_path: Path) -> None:
    """Issue 13.2: replay said 'identical' over a damaged frame; now it names array, chunk and steps."""
    spool = tmp_path / "spool"
    good = _copy(sealed, tmp_path / "good")
    bad = _copy(sealed, spool)
    chunk = chunk_path(bad, "obs/frame", 1)
    _flip_bit(chunk, len(chunk.read_bytes()) // 2)
    before = snapshot(tmp_path)
    proc = run_cli("gymrec-replay", str(bad), cwd=tmp_path)
    assert not one_line_problems(proc, ("stored data is corrupt", "chunk 1 of 'obs/frame'", "steps 64..127",
                                        "crc32c")), proc.stderr
    assert proc.returncode == ChunkCorruptError.exit_code
    with pytest.raises(ChunkCorruptError) as info:
        Episode(bad).obs("frame", 60, 70)
    assert (info.value.array, info.value.chunk, info.value.steps) == ("obs/frame", 1, (64, 128))
    assert not changed_files(before, snapshot(tmp_path))
    assert "identical" in run_cli("gymrec-replay", str(good), cwd=tmp_path).stdout


def test_a_damaged_committed_chunk_is_rebuilt_from_the_journal(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    partial = make_orphan(spool, ENV, 150, 3)  # chunks 0-1 committed, 22 steps only in the journal
    damaged = chunk_path(partial, "reward", 0)
    _flip_bit(damaged, 3)
    original = damaged.read_bytes()
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and (result.checked_steps, result.rebuilt_steps) == (0, 150)
    assert Episode(result.sealed).length == 150
    kept = spool / SET_ASIDE_AREA / partial.name / damaged.relative_to(partial)
    assert kept.read_bytes() == original, "the damaged chunk is set aside, not deleted"
    assert "identical" in _replay_all(spool, tmp_path).stdout


def test_a_marker_claiming_10000_steps_is_trusted_only_as_far_as_the_chunks(tmp_path: Path) -> None:
    """Issue 13.5: this used to leave recovery-failed.txt and strand the episode."""
    spool = tmp_path / "spool"
    spool.mkdir()
    partial = make_orphan(spool, ENV, 150, 4)
    (partial / schema.COMMITTED_NAME).write_text(json.dumps({"steps": 10_000}))
    proc = _replay_all(spool, tmp_path)
    assert proc.returncode == 0 and "128 steps checked, 22 rebuilt" in proc.stderr, proc.stderr
    assert not (partial / FAILED_NOTE).exists() and "identical" in proc.stdout


def test_a_zero_length_committed_chunk_with_a_complete_journal_is_rebuilt(tmp_path: Path) -> None:
    """Issue 13.5: what a power cut leaves (the rename survived, the data did not)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    partial = make_orphan(spool, ENV, 150, 5)
    chunk_path(partial, "obs/frame", 1).write_bytes(b"")
    proc = _replay_all(spool, tmp_path)
    assert proc.returncode == 0 and "64 steps checked, 86 rebuilt" in proc.stderr, proc.stderr
    assert Episode(spool / schema.sealed_name(partial.name.split(".")[0])).length == 150
    assert (spool / SET_ASIDE_AREA / partial.name / "obs" / "frame").is_dir()


def test_alien_and_unreadable_partials_do_not_block_the_spool(sealed: Path, tmp_path: Path) -> None:
    """Issue 13.4: 'mkdir S/backup.partial' or a zarr.json of '{' made every command exit 3."""
    spool = tmp_path / "spool"
    _copy(sealed, spool)
    alien = spool / "backup.partial"
    alien.mkdir()
    broken = spool / schema.partial_name(str(uuid.uuid4()))
    broken.mkdir()
    (broken / schema.METADATA_NAME).write_text("{")
    proc = _replay_all(spool, tmp_path)
    assert proc.returncode == 0 and "identical" in proc.stdout, proc.stderr
    assert "Traceback" not in proc.stderr and alien.is_dir(), "not ours: left alone"
    moved = spool / SET_ASIDE_AREA / broken.name
    assert (moved / schema.METADATA_NAME).read_text() == "{", "unreadable: set aside whole"
    assert "zarr.json" in (spool / SET_ASIDE_AREA / (broken.name + ".reason.txt")).read_text()
    play = run_cli("gymrec-play", "ALE/Pong-v5", "--agent", "random", "--headless", "--max-steps", "20",
                   "--spool", str(spool), cwd=tmp_path)
    assert play.returncode == 0, play.stderr


def _unshare_available() -> str | None:
    if shutil.which("unshare") is None:
        return "no unshare"
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, text=True)
    return None if probe.returncode == 0 else f"unshare -m is not permitted here: {probe.stderr.strip()}"


def test_a_read_only_spool_still_replays_its_sealed_episodes(sealed: Path, tmp_path: Path) -> None:
    """Issue 13.11: replay failed because it could not lock an unrelated orphan."""
    if (why := _unshare_available()) is not None:
        pytest.skip(why)
    spool = tmp_path / "spool"
    _copy(sealed, spool)
    make_orphan(spool, ENV, 70, 6)
    before = snapshot(spool)
    script = (f"mount --bind {spool} {spool} && mount -o remount,ro,bind {spool} && "
              f"{BIN / 'gymrec-replay'} --all --spool {spool}")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "identical" in proc.stdout, proc.stderr
    assert "read-only" in proc.stderr and "Traceback" not in proc.stderr
    assert not changed_files(before, snapshot(spool))


def _writer_of(recorder: psutil.Process) -> psutil.Process:
    for child in recorder.children(recursive=True):
        if "gymrec.shared.spool.writer_process" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no writer process")


def test_a_stopped_writer_keeps_its_episode_from_recovery(tmp_path: Path) -> None:
    """Issue 13.6: SIGSTOP the writer, SIGKILL the recorder: the orphan was recovered under it."""
    spool = tmp_path / "spool"
    # One long episode (random Pong lasts thousands of steps): exactly one .partial while it plays.
    recorder = subprocess.Popen([str(BIN / "gymrec-play"), "PongNoFrameskip-v4", "--agent", "random", "--headless",
                                 "--seed", "2", "--episodes", "1", "--spool", str(spool)], cwd=tmp_path,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
    writer = None
    try:
        deadline = time.monotonic() + 60
        while not list(spool.glob("*" + schema.PARTIAL_SUFFIX)) and time.monotonic() < deadline:
            time.sleep(0.05)
        writer = _writer_of(psutil.Process(recorder.pid))
        writer.send_signal(signal.SIGSTOP)
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.wait()
        (partial,) = spool.glob("*" + schema.PARTIAL_SUFFIX)
        proc = _replay_all(spool, tmp_path)
        assert "recovered" not in proc.stderr and partial.is_dir(), f"a stopped writer's episode is no orphan: {proc.stderr}"
        writer.send_signal(signal.SIGCONT)
        writer.wait(60)
        assert recorder.stderr is not None and b"Traceback" not in recorder.stderr.read()
        proc = _replay_all(spool, tmp_path)
        assert proc.returncode == 0 and "recovered" in proc.stderr and "identical" in proc.stdout, proc.stderr
    finally:
        for process in (writer, psutil.Process(recorder.pid) if recorder.poll() is None else None):
            if process is not None and process.is_running():
                process.send_signal(signal.SIGCONT)
                process.kill()
        recorder.wait()
        if recorder.stderr is not None:
            recorder.stderr.close()


def test_a_small_dev_shm_spills_chunk_buffers_to_files_and_removes_dead_ones(tmp_path: Path) -> None:
    """Issue 13.7: Breakout with 8 MB of /dev/shm died of SIGBUS; killed groups leaked segments."""
    if (why := _unshare_available()) is not None:
        pytest.skip(why)
    spool = tmp_path / "spool"
    dead = "gymrec_999999999_abcdef01_0"  # a pid above pid_max: its owner is certainly gone
    script = (f"mount -t tmpfs -o size=8m tmpfs /dev/shm && touch /dev/shm/{dead} && "
              f"{BIN / 'gymrec-play'} {ENV} --agent random --headless --max-steps 300 --seed 7 --spool {spool}; "
              f"status=$?; ls /dev/shm >&2; exit $status")
    proc = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=180,
                          env={**os.environ, "TMPDIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("buffering in files") == 1 and dead not in proc.stderr
    assert not list(tmp_path.glob("gymrec_*")), "spilled buffers are removed"
    assert "identical" in _replay_all(spool, tmp_path).stdout


def _downgrade_to_version_1(episode: Path) -> None:
    """Rewrite a sealed episode as schema_version 1 wrote it: no crc32c, nested chunk keys."""
    for meta_path in episode.rglob(schema.METADATA_NAME):
        doc = json.loads(meta_path.read_text())
        if doc.get("node_type") != "array":
            continue
        meta = ArrayMeta.read(meta_path.parent, episode.name, meta_path.parent.name)
        doc["codecs"] = [c for c in doc["codecs"] if c["name"] != "crc32c"]
        doc["chunk_key_encoding"]["configuration"]["separator"] = "/"
        for chunk in sorted(meta_path.parent.glob("c.*")):
            index = int(chunk.name.split(".")[1])
            target = meta_path.parent.joinpath("c", str(index), *(["0"] * (len(meta.shape) - 1)))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(chunk.read_bytes()[:-4])
            chunk.unlink()
        meta_path.write_text(json.dumps(doc))
    attrs = attributes(episode)
    del attrs[schema.CHECKSUMS_ATTR]  # version 1 kept no checksums at all
    write_attributes(episode, {**attrs, "schema_version": 1}, sign_them=False)
    (episode / schema.COMMITTED_NAME).write_text(json.dumps({"steps": 150, "sealed": True}))


def test_version_1_episodes_still_read_and_replay(sealed: Path, tmp_path: Path) -> None:
    old = _copy(sealed, tmp_path / "spool")
    _downgrade_to_version_1(old)
    episode = Episode(old)
    assert episode.attrs.schema_version == 1 and not episode.meta("reward").checksum
    assert episode.actions() == Episode(sealed).actions()
    proc = run_cli("gymrec-replay", str(old), cwd=tmp_path)
    assert proc.returncode == 0 and "identical" in proc.stdout, proc.stderr
