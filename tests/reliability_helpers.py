"""Helpers for the reliability suites: SIGKILL recorders, read what they left, snapshot spools.

Everything here looks at the spool from the outside (files, /proc/locks), never through the
recorder's own state, so what it measures is what a crash really leaves behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gymrec.shared.spool import schema
from gymrec.shared.spool.spaces import action_leaves
from tests.conftest import BIN

POLL_S = 0.0005
R5_MIN_TOTAL = 60  # issue 13: the R5 catalogue (play/replay plus uploader) holds at least this many cases
R5_COUNTS = pytest.StashKey[dict[str, int]]()  # cases that ran, per R5 suite, in this pytest session


def record_r5_count(config: pytest.Config, suite: str, ran: int) -> str:
    """Note how many R5 cases of ``suite`` ran; once every suite has, assert the catalogue's total.

    Returns the summary's tail ("" until both suites have run in this session).
    """
    counts = config.stash.setdefault(R5_COUNTS, {})
    counts[suite] = counts.get(suite, 0) + ran
    if len(counts) < 2:
        return ""
    total = sum(counts.values())
    assert total >= R5_MIN_TOTAL, f"the R5 catalogue ran {total} cases ({counts}), fewer than {R5_MIN_TOTAL}"
    return f"; R5 total: {' + '.join(f'{n} {s}' for s, n in counts.items())} = {total} cases"


@contextlib.contextmanager
def xvfb_display() -> Iterator[str | None]:
    """An Xvfb display for cases that need a visible window (human play), or None without Xvfb."""
    if shutil.which("Xvfb") is None:
        yield None
        return
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        ready, _, _ = select.select([read_fd], [], [], 15)
        number = os.read(read_fd, 64).decode().strip() if ready else ""
        yield f":{number}" if number else None
    finally:
        os.close(read_fd)
        server.terminate()
        server.wait(timeout=10)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and mtime: proves nothing pre-existing was touched."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def changed_files(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> list[str]:
    """Pre-existing files that were deleted or changed (new files are allowed)."""
    return sorted(k for k, v in before.items() if after.get(k) != v)


def one_line_problems(proc: subprocess.CompletedProcess[str], needles: tuple[str, ...] = ()) -> list[str]:
    """What is wrong with ``proc`` as a bad-input run (empty when it is a proper one-line error)."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    problems = []
    if proc.returncode == 0:
        problems.append("exit status 0")
    if "Traceback" in proc.stderr or "Traceback" in proc.stdout:
        problems.append("a traceback")
    if len(lines) != 1:
        problems.append(f"{len(lines)} stderr lines: {lines[:4]!r}")
    elif missing := [n for n in needles if n not in lines[0]]:
        problems.append(f"{missing!r} not in {lines[0]!r}")
    return problems


# --- processes --------------------------------------------------------------------------------------


def start(tool: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A gymrec command in its own process group, so a kill can take its writer process too."""
    return subprocess.Popen([str(BIN / tool), *args], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **(env or {})})


def sigkill(proc: subprocess.Popen[bytes], whole_group: bool) -> None:
    """SIGKILL the recorder alone (its writer process drains and exits) or with its process group."""
    try:
        if whole_group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            os.kill(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def group_members(pgid: int) -> dict[int, str]:
    """pid -> command line of every live process in process group ``pgid``."""
    members = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if fields[0] == "Z" or int(fields[2]) != pgid:
                continue
            members[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError, ValueError, IndexError):
            continue
    return members


def is_doom_engine(cmdline: str) -> bool:
    return "vizdoom/vizdoom " in cmdline and "+viz_controlled" in cmdline


def wait_group_gone(pgid: int, timeout: float = 30, linger: float = 0.0) -> list[int]:
    """Until every gymrec process of a group we started has exited; returns the VizDoom engines
    still running ``linger`` seconds after that (SIGKILLed by pid: a killed recorder leaves them)."""
    deadline = time.monotonic() + timeout
    while any(not is_doom_engine(c) for c in group_members(pgid).values()):
        if time.monotonic() > deadline:
            left = group_members(pgid)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"process group {pgid} was still running after {timeout}s: {left}")
        time.sleep(0.02)
    engines = list(group_members(pgid))
    end = time.monotonic() + linger
    while engines and time.monotonic() < end:
        time.sleep(0.1)
        engines = list(group_members(pgid))
    for pid in engines:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return engines


# --- what a spool holds ------------------------------------------------------------------------------


def names(spool: Path) -> set[str]:
    try:
        return set(os.listdir(spool))
    except FileNotFoundError:
        return set()


def committed(partial: Path) -> dict[str, object] | None:
    """The writer's committed.json, or None while it does not exist (or is being replaced)."""
    try:
        return dict(json.loads((partial / schema.COMMITTED_NAME).read_bytes()))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None


def committed_steps(partial: Path) -> int:
    marker = committed(partial)
    return int(marker["steps"]) if marker else 0  # type: ignore[call-overload]


@dataclass(frozen=True)
class Journaled:
    """The intact journal records of a killed episode, read before any recovery ran."""

    episode_id: str
    timestamps: np.ndarray
    actions: dict[str, np.ndarray]

    @property
    def steps(self) -> int:
        return len(self.timestamps)


def read_journal(partial: Path) -> Journaled | None:
    """None when the episode was sealed (renamed away) while we looked."""
    try:
        attrs = json.loads((partial / schema.METADATA_NAME).read_bytes())["attributes"]
        try:
            data = (partial / schema.JOURNAL_NAME).read_bytes()
        except FileNotFoundError:
            if not partial.exists():
                return None
            data = b""  # killed between creating the episode and creating its journal
    except (FileNotFoundError, NotADirectoryError):
        return None
    journaled = schema.journal_format(tuple(action_leaves(attrs["action_space"])), data).unpack_all(data)
    return Journaled(str(attrs["episode_id"]), journaled.timestamps, journaled.leaves)


def held_exclusive(lock_file: Path) -> bool:
    """Whether some process holds an exclusive flock on ``lock_file`` (crash recovery does).

    Read from /proc/locks rather than by trying the lock: a probe holding it even for a moment would
    make a concurrent recoverer think the episode has a live writer and skip it.
    """
    try:
        st = lock_file.stat()
    except FileNotFoundError:
        return False
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[3] == "WRITE" and parts[5] == wanted:
            return True
    return False


def make_orphan(spool: Path, env_id: str, steps: int, seed: int) -> Path:
    """An episode whose writer 'died' after ``steps`` steps: committed chunks plus the journal beyond."""
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import episode_attrs
    from gymrec.shared.envs.backends import make_env
    from gymrec.shared.spool.spaces import encode_action, split_observation
    from gymrec.shared.spool.writer import EpisodeWriter
    from tests.recording import new_attrs

    made = make_env(env_id, {})
    try:
        attrs = new_attrs(episode_attrs(PlayConfig(env_id=env_id, spool=spool, agent="random"), made, seed, 60.0, None))
        writer = EpisodeWriter.create(spool, attrs)
        obs, info = made.env.reset(seed=seed)
        made.env.action_space.seed(seed)
        for _ in range(steps):
            action = made.env.action_space.sample()
            writer.record(split_observation(obs), encode_action(attrs.action_space, action), info)
            obs, reward, terminated, truncated, info = made.env.step(action)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
        writer.close_without_sealing()
    finally:
        made.env.close()
    return spool / schema.partial_name(attrs.episode_id)
