"""The uploader daemon end to end, as a user runs it: ``gymrec-uploader`` in its own process, at its
default niceness, watching a spool and pushing to the suite's local Hub server (tests/hubserver.py).

- P6 (uploader half): the daemon's peak RSS uploading P6's 100k-step session of moving Breakout.
- P7: seconds from an episode's seal (its rename to ``<id>.zarr`` in the spool) to its commit being
  visible on the Hub; once with the daemon started at the seal (start-up counted), once warm.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.recorder_bench import record_moving
from gymrec.shared.spool.episode import Episode

BIN = Path(__file__).resolve().parents[1] / ".venv" / "bin"
TOKEN = "hf_bench_token"
VISIBLE_WITHIN = 300.0  # seconds before a bench gives up on an episode reaching the Hub


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    niceness: int = 0
    peak_rss: int = 0  # bytes: the process's ru_maxrss, known once it has exited
    cpu_s: float = 0.0  # user + system CPU seconds, known once it has exited


@contextmanager
def uploader_daemon(spool: Path, work: Path, hub: Any, repo: str, commit_every: float) -> Iterator[Daemon]:
    """``gymrec-uploader --spool S --repo-id R --commit-every N`` against ``hub``; SIGTERM on leaving."""
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_HOME": str(work / "hf-home"), "HF_HUB_DISABLE_XET": "1"}
    command = [str(BIN / "gymrec-uploader"), "--spool", str(spool), "--repo-id", repo, "--endpoint", hub.endpoint,
               "--commit-every", str(commit_every)]
    log = (work / "uploader.log").open("wb")
    process = subprocess.Popen(command, cwd=work, env=env, stdout=log, stderr=log, start_new_session=True)
    daemon = Daemon(process)
    try:
        yield daemon
        process.send_signal(signal.SIGTERM)  # commits what is pending, then exits
        _reap(daemon, timeout=120)
        if process.returncode != 0:
            raise RuntimeError(f"gymrec-uploader exited {process.returncode}: {(work / 'uploader.log').read_text()[-2000:]}")
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _reap(daemon: Daemon, timeout: float) -> None:
    """Wait for the daemon with wait4, which also gives its own peak RSS and CPU time (Popen.wait does not)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(daemon.process.pid, os.WNOHANG)
        if pid:
            daemon.process.returncode = os.waitstatus_to_exitcode(status)
            daemon.peak_rss = usage.ru_maxrss * 1024  # KiB on Linux
            daemon.cpu_s = usage.ru_utime + usage.ru_stime
            return
        time.sleep(0.1)
    raise TimeoutError(f"gymrec-uploader did not exit within {timeout:.0f} s of SIGTERM")


def _niceness(daemon: Daemon) -> int:
    try:
        return psutil.Process(daemon.process.pid).nice()
    except psutil.Error:
        return daemon.niceness


def _indexed(hub: Any, repo: str) -> set[str]:
    """Episode ids in the index shards at the head."""
    import pyarrow.parquet as pq

    from gymrec.shared.dataset import layout

    out: set[str] = set()
    for path, blob in hub.files(repo).items():
        if layout.is_index_path(path):
            out |= set(pq.read_table(io.BytesIO(blob), columns=["episode_id"]).column("episode_id").to_pylist())
    return out


def wait_visible(hub: Any, repo: str, ids: set[str], daemon: Daemon) -> float:
    """Block until every episode in ``ids`` is in the index at the Hub's head; time.monotonic() then (the clock the Hub server logs requests with).

    Polls the server's state every 20 ms and reads the index only when a new commit landed.
    """
    seen = -1
    deadline = time.monotonic() + VISIBLE_WITHIN
    while time.monotonic() < deadline:
        daemon.niceness = _niceness(daemon) if daemon.process.poll() is None else daemon.niceness
        commits = len(hub.commits(repo)) if hub.has_repo(repo) else 0
        if commits != seen:
            now = time.monotonic()
            seen = commits
            if commits and ids <= _indexed(hub, repo):
                return now
        if daemon.process.poll() is not None:
            raise RuntimeError(f"gymrec-uploader exited {daemon.process.returncode} before its commit was visible")
        time.sleep(0.02)
    raise TimeoutError(f"episodes not visible on the Hub within {VISIBLE_WITHIN:.0f} s")


def _seal(staged: Path, spool: Path) -> float:
    """The seal as the uploader sees it: one rename makes ``<id>.zarr`` appear in the spool root."""
    start = time.monotonic()
    os.rename(staged, spool / staged.name)
    return start


def _request_after(hub: Any, since: float, endpoint: str) -> float:
    """Seconds from ``since`` to the first ``endpoint`` request the Hub received after it (the server's log)."""
    return min(t for t, name, _ in hub.request_log if name == endpoint and t >= since) - since


def _timeline(hub: Any, since: float) -> str:
    """The batch is pushed ``--commit-every`` after its first episode is converted: when each step began."""
    return f"push began at {_request_after(hub, since, 'preupload'):.1f} s, commit at {_request_after(hub, since, 'commit'):.1f} s"


def p7(commit_every: float = 5.0, frames: int = 5000) -> list[dict[str, Any]]:
    """Seal -> visible, cold (the daemon starts at the seal) and warm (it is already running)."""
    import tempfile

    from tests.hub import running_hub

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        spool, staging = work / "spool", work / "staging"
        spool.mkdir()
        staged = [max(record_moving(staging / str(i), frames, seed=10 + i), key=lambda p: Episode(p).length)
                  for i in range(2)]
        ids = [Episode(p).id for p in staged]  # read now: once sealed, the daemon claims them (a rename)
        repo = "bench/gymrec-p7"
        with running_hub(token=TOKEN, tmp_path=work) as hub, uploader_daemon(spool, work, hub, repo, commit_every) as d:
            sealed = _seal(staged[0], spool)  # no wait for the daemon: its start-up is part of the figure
            cold = wait_visible(hub, repo, {ids[0]}, d) - sealed
            cold_steps = _timeline(hub, sealed)
            sealed = _seal(staged[1], spool)
            warm = wait_visible(hub, repo, {ids[1]}, d) - sealed
            warm_steps = _timeline(hub, sealed)
    target = commit_every + 10
    note = (f"nice {d.niceness} (its default), --commit-every {commit_every:g}, served Breakout, local Hub; "
            f"daemon CPU {d.cpu_s:.1f} s for both")
    return [
        {"id": "P7", "what": f"sealed -> visible, daemon started at the seal, {frames // 1000}k frames (s)",
         "value": cold, "fmt": "{:.1f}", "target": f"<= {target:g}", "ok": cold <= target,
         "note": f"{cold_steps}; {note}"},
        {"id": "P7", "what": f"sealed -> visible, daemon already watching, {frames // 1000}k frames (s)",
         "value": warm, "fmt": "{:.1f}", "target": f"<= {target:g}", "ok": warm <= target,
         "note": f"{warm_steps}; {note}"},
    ]


def p6_uploader(spool: Path, work: Path, commit_every: float = 5.0) -> list[dict[str, Any]]:
    """Peak RSS of the daemon converting and pushing every episode in ``spool`` (P6's session)."""
    from tests.hub import running_hub

    ids = {Episode(p).id for p in spool.glob("*.zarr")}
    frames = sum(Episode(p).length for p in spool.glob("*.zarr"))
    repo = "bench/gymrec-p6"
    start = time.monotonic()
    with running_hub(token=TOKEN, tmp_path=work) as hub, uploader_daemon(spool, work, hub, repo, commit_every) as d:
        seconds = wait_visible(hub, repo, ids, d) - start
        commits = len(hub.commits(repo)) - 1  # the first is the repo's creation
    peak = d.peak_rss / 2**20
    return [{"id": "P6", "what": "uploader daemon peak RSS, convert + push that session (MB)", "value": peak,
             "fmt": "{:.0f}", "target": "< 500", "ok": peak < 500,
             "note": f"gymrec-uploader process, nice {d.niceness}; {frames:,} frames, {len(ids)} episodes, "
                     f"{commits} commits, {seconds:.0f} s to visible"}]
