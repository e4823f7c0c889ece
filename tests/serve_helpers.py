"""gymrec-serve under test: a real server process, Debian's chromium through playwright, and a pixel bot.

The bot plays in the page the way ``tests/pixel_bot.py`` plays the window: it reads the canvas (the
frame the page drew, pixel for pixel), computes ``policy(frame)`` and holds that answer's key with real
key events (playwright's keyboard: CDP input events, the same path as a person's keys). It logs, per
frame change, the frame's fingerprint, and whether the page had already sent that frame's action when
the press was through (then the press acts on the next step, as it must).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
ANSWER_KEYS = ("ArrowLeft", "ArrowRight", "Space", None)  # Breakout: LEFT, RIGHT, FIRE, NOOP
ANSWER_ACTIONS = (3, 2, 1, 0)
STRESS = os.environ.get("GYMREC_STRESS", "") not in ("", "0")  # make stress: four browsers at once too
RAW_PID = "RAWPID5f3c9e21aa"
TOKEN = "admin-token-0123456789"
STUDY = """
[study]
id = "pilot-1"
title = "Play Breakout"
consent = "I agree to take part."
instructions = "Arrow keys move, space serves."
completion_code = "DONE-4242"
salt = "test-salt-0123456789abcdef"

[[games]]
env = "ALE/Breakout-v5"
episodes = 1
seconds = {seconds}

[[questions]]
id = "fun"
text = "Fun (1-3)?"
kind = "choice"
choices = ["1", "2", "3"]
"""
# The probe the bot runs in the page: a fingerprint of the canvas (RGB only, as recorded) and the state.
PROBE = """() => {
  const c = document.getElementById('screen');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let s = 0;
  for (let i = 0, k = 0; i < d.length; i += 4, k += 3) {
    s += d[i] * ((k % 251) + 1) + d[i + 1] * (((k + 1) % 251) + 1) + d[i + 2] * (((k + 2) % 251) + 1);
  }
  const cur = window.gymrecState.current;
  return {h: s % 65521, t: cur ? cur.t : -1, acted: cur ? cur.acted : true, mode: window.gymrecState.mode};
}"""


def fingerprint(rgb: np.ndarray) -> int:
    """PROBE's fingerprint of a recorded observation."""
    flat = np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8).reshape(-1).astype(np.int64)
    weights = (np.arange(flat.size, dtype=np.int64) % 251) + 1
    return int((flat * weights).sum() % 65521)


def policy(h: int) -> int:
    return (h * 2654435761 >> 7) % 4


def need_browser() -> None:
    if not CHROMIUM.exists():
        pytest.skip("no /usr/bin/chromium (Debian: apt-get install chromium); the browser tests skip")
    pytest.importorskip("playwright.sync_api", reason="playwright for Python (the web extra) is not installed")
    pytest.importorskip("starlette", reason="the web extra is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProc:
    proc: subprocess.Popen[str]
    url: str
    spool: Path

    def kill_all(self) -> None:
        """SIGKILL the server, its participants and their writers: a power cut for the process tree."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)


@contextlib.contextmanager
def serve(tmp: Path, seconds: float = 4, extra: tuple[str, ...] = ()) -> Iterator[ServerProc]:
    study = tmp / "study.toml"
    study.write_text(STUDY.format(seconds=seconds))
    token = tmp / "token"
    token.write_text(TOKEN)
    spool = tmp / "spool"
    port = free_port()
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    proc = subprocess.Popen([str(BIN / "gymrec-serve"), str(study), "--port", str(port), "--spool", str(spool),
                             "--admin-token-file", str(token), "--seed", "7", *extra],
                            env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    server = ServerProc(proc, f"http://127.0.0.1:{port}", spool)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gymrec-serve did not start: {proc.stderr.read() if proc.stderr else ''}")
            time.sleep(0.1)
        yield server
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill_all()


@contextlib.contextmanager
def browser_page() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
        try:
            yield browser.new_page()
        finally:
            browser.close()


@dataclass
class BotLog:
    presses: list[dict[str, Any]] = field(default_factory=list)  # per frame change: h, t, in_time, nudge


def bot_play(page: Any, seconds: float) -> BotLog:
    """Play for ``seconds`` (or until the page leaves play): one answer per frame change, held."""
    log = BotLog()
    held: str | None = None
    last_h, last_change = None, time.monotonic()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        probe = page.evaluate(PROBE)
        if probe["mode"] != "play":
            if probe["mode"] in ("over", "idle") and last_h is not None:
                break
            time.sleep(0.01)
            continue
        if probe["h"] != last_h and probe["t"] >= 0:
            last_h, last_change = probe["h"], time.monotonic()
            key = ANSWER_KEYS[policy(probe["h"])]
            if key != held:
                if key is not None:
                    page.keyboard.down(key)
                if held is not None:
                    page.keyboard.up(held)
                held = key
            after = page.evaluate(PROBE)
            log.presses.append({"h": probe["h"], "t": probe["t"], "changed": True,
                                "in_time": after["t"] == probe["t"] and not after["acted"]})
        elif time.monotonic() - last_change > 0.5:  # the ball waits to be served: nudge, never counted
            page.keyboard.press("Space")
            log.presses.append({"h": probe["h"], "t": probe["t"], "changed": False, "in_time": False})
            last_change = time.monotonic()
        time.sleep(0.003)
    if held is not None:
        page.keyboard.up(held)
    return log


def spool_files(spool: Path) -> list[Path]:
    return [p for p in spool.rglob("*") if p.is_file()] if spool.exists() else []


def episodes(spool: Path, suffix: str = ".zarr") -> list[Path]:
    return sorted(p for p in spool.iterdir() if p.suffix == suffix) if spool.exists() else []


def raw_id_anywhere(root: Path, raw: str) -> list[Path]:
    needle = raw.encode()
    return [p for p in spool_files(root) if needle in p.read_bytes()]


def gymrec_replay(episode: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    return subprocess.run([str(BIN / "gymrec-replay"), str(episode), *args], capture_output=True, text=True,
                          timeout=180, env=env)
