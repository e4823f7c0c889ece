"""No poison pills (issue 21 item 4): files a filesystem can hold where an episode or its zarr.json should
be (a symlink loop, a FIFO, a link to /dev/zero, a socket, a huge sparse file) never hang or crash
``gymrec-uploader status``, ``--once``, the daemon or replay's spool reader: each is skipped or
quarantined, said once, and the good episodes go up."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from pathlib import Path

from reliability_uploader_helpers import quarantined_ids, stderr_lines
from uploader_helpers import clean_env, daemon_until, local_index, run_uploader

from gymrec.shared.spool import schema
from tests.recording import RecordingCache


def _poisons(spool: Path) -> dict[str, str]:
    """{episode id: what it is} of five odd entries named like episodes."""
    made: dict[str, str] = {}

    def name(kind: str) -> Path:
        eid = str(uuid.uuid4())
        made[eid] = kind
        return spool / schema.sealed_name(eid)

    loop = name("symlink loop")
    loop.symlink_to(loop.name)
    for kind in ("fifo", "dev-zero", "socket", "huge"):
        folder = name(kind)
        folder.mkdir()
        meta = folder / schema.METADATA_NAME
        if kind == "fifo":
            os.mkfifo(meta)
        elif kind == "dev-zero":
            meta.symlink_to("/dev/zero")
        elif kind == "socket":
            with socket.socket(socket.AF_UNIX) as sock, contextlib.chdir(folder):  # AF_UNIX paths are short
                sock.bind(meta.name)
        else:
            with open(meta, "wb") as f:
                f.truncate(8 << 30)  # sparse: 8 GB a reader must not load
    return made


def test_odd_files_never_hang_or_block_the_good_episodes(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    good = {recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, s).stem for s in (1, 2)}
    poisons = _poisons(spool)
    env = clean_env(HOME=str(tmp_path))
    status = run_uploader(["status", "--spool", str(spool)], tmp_path, env, timeout=60)
    assert status.returncode == 0 and "Traceback" not in status.stderr, status.stderr
    dataset = tmp_path / "dataset"
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset)], tmp_path, env, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("2 uploaded") and "4 quarantined" in done.stdout, done.stderr
    assert set(local_index(dataset)) == good and "Traceback" not in done.stderr
    lines = stderr_lines(done.stderr)
    for eid, kind in poisons.items():  # each said once
        assert sum(eid in line for line in lines) == 1, (kind, lines)
    assert quarantined_ids(spool) == {e for e, k in poisons.items() if k != "symlink loop"}
    loop = next(e for e, k in poisons.items() if k == "symlink loop")
    assert (spool / schema.sealed_name(loop)).is_symlink()  # left where it is: not ours to move
    again = run_uploader(["status", "--spool", str(spool)], tmp_path, env, timeout=60)
    assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr


def test_the_daemon_skips_odd_files_and_honours_sigterm(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    good = {recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, s).stem for s in (1, 2)}
    _poisons(spool)
    dataset = tmp_path / "dataset"
    args = ["--spool", str(spool), "--local-dir", str(dataset), "--commit-every", "0"]

    def uploaded() -> bool:  # their receipts are filed after the commit (reading the dataset now would race it)
        return all((spool / "uploaded-local" / (eid + ".receipt.json")).is_file() for eid in good)

    code, out, err = daemon_until(args, tmp_path, clean_env(HOME=str(tmp_path)), uploaded, "uploaded the good episodes")
    assert code == 0 and "Traceback" not in err, err
    assert out.startswith("2 uploaded") and set(local_index(dataset)) == good, out


def test_replays_spool_reader_skips_odd_files(recordings: RecordingCache, tmp_path: Path, spool: Path) -> None:
    from tests.replay_helpers import replay_cli

    recordings.copy(spool, "BreakoutNoFrameskip-v4", 20, 1)
    _poisons(spool)
    done = replay_cli(["--spool", str(spool), "--all"])
    assert "Traceback" not in done.stderr and "identical" in done.stdout, done.stdout + done.stderr
