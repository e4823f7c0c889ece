"""Real-X-window helpers for the tests that drive gymrec-play under Xvfb (real window, pixel bot).

Everything else in the suite posts pygame events to a dummy video driver; these tests go through
the X server, the SDL x11 driver and the keyboard focus, as a person at the keyboard would.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gymrec.shared.spool.episode import Episode
from tests.conftest import BIN

PACKAGES = {"Xvfb": "xvfb", "xdotool": "xdotool", "import": "imagemagick"}  # Debian's


def needs(*tools: str) -> pytest.MarkDecorator:
    """Skip unless every one of ``tools`` is on PATH, naming what to install."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    packages = ", ".join(PACKAGES.get(tool, tool) for tool in missing)
    return pytest.mark.skipif(bool(missing), reason=f"needs {', '.join(missing)} (Debian: {packages})")


@contextlib.contextmanager
def xvfb(screen: str = "1024x768x24") -> Iterator[str]:
    """An Xvfb server on a display number it picks itself (-displayfd), so parallel runs never clash."""
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 15)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(timeout=10)


def play_env(display: str) -> dict[str, str]:
    """The environment for a gymrec-play that opens a real window on ``display`` (SDL picks x11)."""
    env = {k: v for k, v in os.environ.items() if k != "SDL_VIDEODRIVER"}
    return env | {"DISPLAY": display, "SDL_AUDIODRIVER": "dummy"}


def start_play(display: str, args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([str(BIN / "gymrec-play"), *args], cwd=cwd, env=play_env(display),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(process: subprocess.Popen[str]) -> None:
    """Kill ``process`` if it is still running (a failed test must not leak it)."""
    if process.poll() is None:
        process.kill()
        process.communicate()


def x(display: str, *args: str, timeout: float = 15) -> str:
    out = subprocess.run(list(args), env={**os.environ, "DISPLAY": display}, capture_output=True, text=True,
                         timeout=timeout, check=True)
    return out.stdout


def geometry(display: str, window: str) -> dict[str, int]:
    shell = x(display, "xdotool", "getwindowgeometry", "--shell", window)
    return {k: int(v) for k, v in (line.split("=") for line in shell.split()) if k in ("X", "Y", "WIDTH", "HEIGHT")}


def find_window(display: str, play: subprocess.Popen[str], width: int, timeout: float = 30) -> str:
    """The game window, ``width`` pixels wide (SDL makes short-lived helper windows too).

    Found by class: xdotool 3.2016's --name does not match SDL's UTF-8 window titles.
    """
    env = {**os.environ, "DISPLAY": display}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--class", "gymrec"], env=env, capture_output=True, text=True,
                               timeout=10)
        for window in found.stdout.split():
            try:
                if geometry(display, window)["WIDTH"] == width:
                    return window
            except subprocess.CalledProcessError:
                continue  # gone already
        if play.poll() is not None:
            raise AssertionError(f"gymrec-play exited {play.returncode} before its window appeared: {play.communicate()[1]}")
        time.sleep(0.1)
    raise AssertionError("no gymrec window appeared")


def input_events(episode: Episode) -> list[tuple[int, str, int]]:
    """The input log as (absolute monotonic ns, kind, key code)."""
    log = episode.input_log()
    assert log is not None
    return [(log["origin_ns"] + t, log["kinds"][k], code)
            for t, k, code in zip(log["t_ns"], log["kind"], log["code"], strict=True)]
