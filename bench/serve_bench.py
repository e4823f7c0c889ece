"""P13: browser play at 60 Hz, the frame intervals the page saw, with 1 and 4 participants at once.

``gymrec-serve`` runs a one-game study (``PongNoFrameskip-v4``, the console's 60 Hz) and Debian's
chromium (headless, through playwright's ``executable_path``; never a downloaded build) opens one page
per participant, each in its own browser context, accepts consent and plays (Space every half second
so the ball is served, arrows in between). The figure is what the page recorded: the interval between
two frames going up (``browser_timing.shown_us``, the ``requestAnimationFrame`` time of each frame)
against 1/60 s, p99 over every participant's steps. Server CPU is the server's whole process tree
(server, participant processes, their writers) sampled while everyone plays, per participant.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from gymrec.shared.spool.episode import Episode

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync")
ENV_ID = "PongNoFrameskip-v4"  # a game that lasts the 30 s (random Breakout loses its lives in ~10)
SKIP = 5  # the first intervals include the page's start-up
STUDY = """[study]
id = "bench-p13"
consent = "bench"
instructions = "bench"
completion_code = "BENCH"
salt = "bench-salt-0123456789"

[[games]]
env = "{env}"
seconds = {seconds}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _server(tmp: Path, seconds: float, participants: int) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    study = tmp / "study.toml"
    study.write_text(STUDY.format(env=ENV_ID, seconds=seconds))
    spool, port = tmp / "spool", _port()
    server = subprocess.Popen([str(BIN / "gymrec-serve"), str(study), "--port", str(port), "--spool", str(spool),
                               "--max-participants", str(participants), "--seed", "3"],
                              stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gymrec-serve did not start")
            time.sleep(0.1)
        yield server, f"http://127.0.0.1:{port}", spool
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _tree_cpu(pid: int) -> float:
    total = 0.0
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for proc in [root, *root.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
    return total


def play(participants: int, seconds: float) -> tuple[np.ndarray, float, int]:
    """(every interval error in ms, server CPU in % of a core per participant, steps) of one run."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, _server(Path(tmp), seconds, participants) as (server, url, spool):
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
            pages = [browser.new_context().new_page() for _ in range(participants)]
            for i, page in enumerate(pages):
                page.goto(f"{url}/?PROLIFIC_PID=bench{i}")
                page.click("#accept")
                page.wait_for_function("window.gymrecState.mode === 'gate'", timeout=60_000)
            for page in pages:
                page.keyboard.press("Enter")
            cpu0, t0 = _tree_cpu(server.pid), time.monotonic()
            for i in range(int(seconds * 2) - 2):  # stop sampling before the game ends (children exit)
                page = pages[i % participants]
                page.keyboard.press("Space" if i % 4 == 0 else ("ArrowLeft" if i % 4 == 1 else "ArrowRight"))
                time.sleep(0.5 / participants)
            cpu = (_tree_cpu(server.pid) - cpu0) / (time.monotonic() - t0) / participants * 100
            for page in pages:
                # The episode is sealed when the page shows 'over' (it waits there for a key); a key pressed
                # there already moved it on to the study's end ('done').
                page.wait_for_function("window.gymrecState.mode === 'over' || window.gymrecState.done === true",
                                       timeout=(seconds + 60) * 1000)
            browser.close()
        episodes = [Episode(p) for p in sorted(spool.glob("*.zarr"))]
    period_ms = 1000 / 60
    errors = [np.abs(np.diff(np.asarray(e.attrs.browser_timing["shown_us"][SKIP:])) / 1000 - period_ms)
              for e in episodes if e.attrs.browser_timing]
    return np.concatenate(errors) if errors else np.zeros(0), cpu, sum(e.length for e in episodes)


def p13(seconds: float = 30.0, counts: tuple[int, ...] = (1, 4)) -> list[dict[str, Any]]:
    if not CHROMIUM.exists():
        return [{"id": "P13", "what": "browser at 60 Hz: p99 frame-interval error (ms)", "value": "n/a",
                 "target": "< 8.3", "ok": False, "note": "not measured: needs /usr/bin/chromium (apt-get install chromium)"}]
    rows: list[dict[str, Any]] = []
    for n in counts:
        errors, cpu, steps = play(n, seconds)
        p99 = float(np.percentile(errors, 99)) if errors.size else float("nan")
        rows += [
            {"id": "P13", "what": f"browser at 60 Hz, {n} participant(s): p99 frame-interval error (ms)", "value": p99,
             "fmt": "{:.2f}", "target": "< 8.3", "ok": p99 < 1000 / 60 / 2,
             "note": f"{errors.size:,} intervals of the page's rAF times, {steps:,} steps; "
                     f"max {errors.max() if errors.size else 0:.1f} ms; headless chromium, 127.0.0.1"},
            {"id": "P13", "what": f"browser at 60 Hz, {n} participant(s): server CPU per participant (%)", "value": cpu,
             "fmt": "{:.0f}", "target": "< 50", "ok": cpu < 50,
             "note": "server + participant + writer processes, % of one core, while playing"},
        ]
    return rows
