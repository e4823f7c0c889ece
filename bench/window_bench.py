"""P2 in a real X window: ``gymrec-play`` (a person's mode) under Xvfb at 60 Hz, keys from xdotool.

The dummy-driver row (recorder_bench.p2) takes lateness from the clock's own report, where
``flip`` does nothing. Here the figure comes from what the episode recorded: the interval between
consecutive steps' ``shown_ns`` (when each frame was put on screen), against 1/60 s.
"""

from __future__ import annotations

import os
import resource
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared.spool import schema
from gymrec.shared.spool.episode import Episode

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
ENV_ID = "BreakoutNoFrameskip-v4"  # the console's own 60 Hz: gymrec-play's default --fps
WIDTH = 160 * 3  # the frame at gymrec-play's default --scale 3
SKIP = 5  # the first intervals include the window's start-up


@contextmanager
def xvfb() -> Iterator[str]:
    """An Xvfb server on a display it picks itself (-displayfd); its DISPLAY."""
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 15)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            raise RuntimeError("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(timeout=10)


def _xdotool(display: str, *args: str, timeout: float = 15) -> str:
    done = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                          timeout=timeout)
    return done.stdout if done.returncode == 0 else ""


def _find_window(display: str, play: subprocess.Popen[str], timeout: float = 30) -> str:
    """The game window: SDL makes short-lived helper windows too, so the one of the frame's width."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for window in _xdotool(display, "search", "--class", "gymrec").split():
            shell = _xdotool(display, "getwindowgeometry", "--shell", window)
            if f"WIDTH={WIDTH}" in shell.split():
                return window
        if play.poll() is not None:
            raise RuntimeError(f"gymrec-play exited {play.returncode} before its window appeared")
        time.sleep(0.1)
    raise RuntimeError("no gymrec window appeared")


def play_in_window(spool: Path, seconds: float) -> tuple[list[Path], float]:
    """Start gymrec-play, press N, play ``seconds`` of LEFT/RIGHT/FIRE, Esc: the sealed episodes
    (a game lost before the end is followed by the next) and the CPU seconds gymrec-play used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with xvfb() as display:
        env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}  # SDL picks x11
        env |= {"DISPLAY": display, "SDL_AUDIODRIVER": "dummy"}
        play = subprocess.Popen([str(BIN / "gymrec-play"), ENV_ID, "--spool", str(spool), "--seed", "4"],
                                cwd=spool.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            window = _find_window(display, play)
            _xdotool(display, "windowfocus", "--sync", window)
            _xdotool(display, "key", "n")  # the start gate
            # One xdotool for the whole performance: a process per key would compete with the game.
            script: list[str] = []
            for i in range(int(seconds / 0.3)):
                key = ("Left", "space", "Right")[i % 3]
                script += ["keydown", key, "sleep", "0.25", "keyup", key, "sleep", "0.05"]
            _xdotool(display, *script, "key", "Escape", timeout=seconds + 30)
            out, err = play.communicate(timeout=60)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)  # gymrec-play and the xdotool calls
        finally:
            if play.poll() is None:
                play.kill()
                play.wait()
    if play.returncode != 0:
        raise RuntimeError(f"gymrec-play exited {play.returncode}: {err[-1000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return [Path(line) for line in out.splitlines() if line.endswith(".zarr")], cpu


def interval_errors(episode: Episode, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """|step interval - 1/fps| in ms, from ``shown_ns`` and from the wall-clock ``timestamp``."""
    shown = episode.rows(schema.SHOWN_NS, episode.length, np.dtype(np.int64))
    stamps = episode.rows(schema.TIMESTAMP, episode.length, np.dtype(np.float64))
    period_ms = 1e3 / fps
    by_shown = np.abs(np.diff(shown[SKIP:]) / 1e6 - period_ms)
    by_stamp = np.abs(np.diff(stamps[SKIP:]) * 1e3 - period_ms)
    return by_shown, by_stamp


def p2_window(seconds: float = 15.0) -> list[dict[str, Any]]:
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        return [{"id": "P2", "what": "real window (Xvfb): p99 frame-interval error (ms)", "value": "n/a",
                 "target": "< 2", "ok": False, "note": f"not measured: needs {', '.join(missing)}"}]
    with tempfile.TemporaryDirectory() as tmp:
        paths, cpu = play_in_window(Path(tmp) / "spool", seconds)
        episodes = [Episode(p) for p in paths]
        fps = episodes[0].attrs.fps
        errors = [interval_errors(e, fps) for e in episodes]
        shown, stamp = (np.concatenate([e[i] for e in errors]) for i in (0, 1))
    steps = sum(e.length for e in episodes)
    p99 = float(np.percentile(shown, 99))
    late = int(np.sum(shown > 1e3 / fps / 2))  # an interval off by half a frame or more
    return [
        {"id": "P2", "what": "real window (Xvfb): p99 frame-interval error (ms)", "value": p99, "fmt": "{:.2f}",
         "target": "< 2", "ok": p99 < 2,
         "note": f"from shown_ns, {len(shown):,} intervals at {fps:g} Hz; max {shown.max():.2f} ms; "
                 f"timestamp array: p99 {np.percentile(stamp, 99):.2f}, max {stamp.max():.2f} ms"},
        {"id": "P2", "what": "real window (Xvfb): intervals off by >= half a frame", "value": late, "fmt": "{:d}",
         "target": "0", "ok": late == 0, "note": f"{steps:,} steps in {len(episodes)} episodes; gymrec-play CPU {cpu / steps * 1e3:.1f} ms/step "
                 f"(a frame is {1e3 / fps:.1f} ms)"},
    ]
