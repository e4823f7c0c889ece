"""gymrec-export video: MP4s at the recorded fps; --lossless decodes back to the recorded frames exactly."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from gymrec.export.strip import STRIP_ROWS
from gymrec.export.video import Composer, VideoOptions
from gymrec.shared.spool.sources import SpoolSource
from tests.conftest import BIN, record
from tests.export_helpers import export_cli, one_line_error, recorded_frames, to_local_dataset, tree

ALE, DOOM = "ALE/Breakout-v5", "VizdoomBasic-v1"


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("video-spool")
    cwd = tmp_path_factory.mktemp("video-cwd")
    record(ALE, root, cwd, 120, 3)
    record(DOOM, root, cwd, 100, 4)
    return root


def _episode(spool: Path, env_id: str) -> Path:
    (found,) = [p for p in spool.glob("*.zarr") if SpoolSource(p).env_id == env_id]
    return found


@dataclass(frozen=True)
class Decoded:
    frames: list[np.ndarray]
    fps: float
    codec: str
    pix_fmt: str


def _decode(path: Path) -> Decoded:
    with av.open(str(path)) as container:  # the stream's fields are only valid while it is open
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        return Decoded(frames, float(stream.average_rate or 0), stream.codec_context.name, stream.codec_context.pix_fmt or "")


@pytest.mark.parametrize("env_id", [ALE, DOOM])
def test_lossless_decodes_back_bit_exact_with_the_strip_outside(env_id: str, spool: Path, tmp_path: Path) -> None:
    episode = _episode(spool, env_id)
    out = tmp_path / "ep.mp4"
    proc = export_cli("video", episode.stem[:8], str(out), "--spool", str(spool), "--lossless", "--strip", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    decoded = _decode(out)
    frames = decoded.frames
    source = SpoolSource(episode)
    recorded = recorded_frames(episode)[source.attrs.image_key]
    height, width = recorded[0].shape[:2]
    assert decoded.pix_fmt == "gbrp"  # RGB, no chroma subsampling
    assert decoded.fps == pytest.approx(source.attrs.fps)
    assert len(frames) == len(recorded) == source.length + 1
    assert frames[0].shape[0] == height + STRIP_ROWS + (height + STRIP_ROWS) % 2
    for got, want in zip(frames, recorded, strict=True):
        assert np.array_equal(got[:height, :width], want)  # the game image, untouched
    strips = [f[height : height + STRIP_ROWS] for f in frames]
    assert strips[0].max() > 100  # text is drawn ...
    assert not np.array_equal(strips[0], strips[-1])  # ... and it changes with the step


def test_default_is_even_yuv420p_h264_of_good_quality(spool: Path, tmp_path: Path) -> None:
    episode = _episode(spool, DOOM)
    out = tmp_path / "doom.mp4"
    assert export_cli("video", str(episode), str(out), "--scale", "2", cwd=tmp_path).returncode == 0
    decoded = _decode(out)
    frames = decoded.frames
    assert (decoded.codec, decoded.pix_fmt) == ("h264", "yuv420p")
    assert decoded.fps == pytest.approx(SpoolSource(episode).attrs.fps)
    assert frames[0].shape[0] % 2 == 0 and frames[0].shape[1] % 2 == 0
    recorded = recorded_frames(episode)["screen"]
    assert len(frames) == len(recorded)
    scaled = recorded[50].repeat(2, axis=0).repeat(2, axis=1).astype(np.int16)
    error = np.abs(frames[50][: scaled.shape[0], : scaled.shape[1]].astype(np.int16) - scaled)
    assert error.mean() < 4  # crf 18: close to the original, although not bit-exact


def test_odd_sizes_are_padded_to_even() -> None:
    composer = Composer(211, 161, VideoOptions(strip=True, scale=1))
    frame = composer.frame(np.full((211, 161, 3), 7, np.uint8), "step 0")
    assert frame.shape == (224, 162, 3)
    assert (frame[:211, :161] == 7).all() and (frame[:211, 161] == 0).all()


def test_all_from_a_local_dataset(spool: Path, tmp_path: Path) -> None:
    dataset = to_local_dataset(spool, tmp_path / "dataset", tmp_path)
    out = tmp_path / "videos"
    proc = export_cli("video", str(dataset), "--all", str(out), "--lossless", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for episode in spool.glob("*.zarr"):
        frames = _decode(out / f"{episode.stem}.mp4").frames
        leaf = SpoolSource(episode).attrs.image_key
        recorded = recorded_frames(episode)[leaf]
        h, w = recorded[0].shape[:2]
        assert all(np.array_equal(f[:h, :w], r) for f, r in zip(frames, recorded, strict=True))
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{p.stem}.mp4" for p in spool.glob("*.zarr"))


def test_from_the_hub(spool: Path, hub: object, tmp_path: Path) -> None:
    dataset = to_local_dataset(spool, tmp_path / "dataset", tmp_path)
    hub.seed_repo("someone/gymrec-mixed", tree(dataset))  # type: ignore[attr-defined]
    episode = _episode(spool, ALE)
    out = tmp_path / "hub.mp4"
    proc = export_cli("video", episode.stem[:8], str(out), "--repo-id", "someone/gymrec-mixed", "--lossless",
                      "--endpoint", hub.endpoint, cwd=tmp_path, env={"HF_TOKEN": ""})  # type: ignore[attr-defined]
    assert proc.returncode == 0, proc.stderr
    frames = _decode(out).frames
    assert all(np.array_equal(f, r) for f, r in zip(frames, recorded_frames(episode)["frame"], strict=True))


def test_bad_input_is_one_line_and_writes_nothing(spool: Path, tmp_path: Path) -> None:
    episode = _episode(spool, ALE)
    out = tmp_path / "taken.mp4"
    out.write_bytes(b"keep me")
    line = one_line_error(export_cli("video", str(episode), str(out), cwd=tmp_path))
    assert "already exists" in line and "--force" in line and out.read_bytes() == b"keep me"
    assert export_cli("video", str(episode), str(out), "--force", cwd=tmp_path).returncode == 0
    assert out.read_bytes()[4:8] == b"ftyp"

    assert "no episode" in one_line_error(
        export_cli("video", "0000dead", str(tmp_path / "x.mp4"), "--spool", str(spool), cwd=tmp_path)).lower()
    assert "--all" in one_line_error(export_cli("video", str(episode), cwd=tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.mp4"]  # no temporary, no x.mp4


def test_a_full_disk_leaves_nothing_under_the_target(spool: Path, tiny_disk: Path, tmp_path: Path) -> None:
    proc = export_cli("video", str(_episode(spool, DOOM)), str(tiny_disk / "doom.mp4"), "--lossless", cwd=tmp_path)
    assert "full" in one_line_error(proc)
    assert list(tiny_disk.iterdir()) == []


def _run_on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """stderr is a pseudo-terminal, as in an interactive shell; returns (exit code, what it showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a fresh pty is 0x0: tqdm draws nothing
    try:
        proc = subprocess.run([str(BIN / "gymrec-export"), *args], cwd=cwd, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=slave, timeout=300)
        os.set_blocking(master, False)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            shown += chunk
        return proc.returncode, shown.decode(errors="replace")
    finally:
        os.close(master)
        os.close(slave)


def test_progress_bar_only_on_a_terminal(spool: Path, tmp_path: Path) -> None:
    episode = str(_episode(spool, ALE))
    code, shown = _run_on_a_terminal(["video", episode, str(tmp_path / "tty.mp4")], tmp_path)
    assert code == 0 and "frame" in shown and "%" in shown
    piped = export_cli("video", episode, str(tmp_path / "pipe.mp4"), cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == ""
