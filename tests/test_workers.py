"""gymrec-play --workers N: reproducible parallel agent recording into one spool, stopped as one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.workers import plan
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.schema import PARTIAL_SUFFIX, SEALED_SUFFIX
from tests.conftest import BIN, run_cli

BREAKOUT = "BreakoutNoFrameskip-v4"


def _play(spool: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("gymrec-play", BREAKOUT, "--agent", "random", "--headless", "--spool", str(spool), *extra, cwd=cwd)


def _fingerprint(spool: Path) -> list[tuple[int, int, str]]:
    """What an episode is, whatever its id: seed, length and every action."""
    out = []
    for path in spool.glob("*" + SEALED_SUFFIX):
        episode = Episode(path)
        out.append((episode.attrs.seed, episode.length, json.dumps([int(a) for a in episode.actions()])))
    return sorted(out)


def test_plan_splits_episodes_and_derives_seeds() -> None:
    config = PlayConfig(env_id=BREAKOUT, spool=Path("/unused"), seed=7, agent="random", episodes=5)
    first, again = plan(config, 3), plan(config, 3)
    assert [c.episodes for c in first] == [2, 2, 1] and first == again
    assert len({c.seed for c in first}) == 3 and 7 not in {c.seed for c in first}
    assert len(plan(PlayConfig(env_id=BREAKOUT, spool=Path("/x"), agent="random", episodes=1), 4)) == 1


def test_same_seed_and_workers_record_the_same_episodes(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        done = _play(tmp_path / name, tmp_path, "--workers", "2", "--episodes", "4", "--seed", "5", "--max-steps", "80")
        assert done.returncode == 0, done.stderr
        assert "4 episode(s)" in done.stderr and "by 2 workers" in done.stderr
        assert len([line for line in done.stdout.splitlines() if line.endswith(SEALED_SUFFIX)]) == 4
        runs.append(_fingerprint(tmp_path / name))
    assert runs[0] == runs[1] and len(runs[0]) == 4
    assert len({seed for seed, _, _ in runs[0]}) == 4  # every episode its own seed
    replayed = run_cli("gymrec-replay", "--all", "--spool", str(tmp_path / "a"), cwd=tmp_path)
    assert replayed.returncode == 0 and replayed.stdout.count("identical") == 4, replayed.stdout


def test_human_play_refuses_workers(tmp_path: Path) -> None:
    done = run_cli("gymrec-play", BREAKOUT, "--workers", "2", "--spool", str(tmp_path / "spool"), cwd=tmp_path)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "--workers" in done.stderr
    assert not (tmp_path / "spool").exists()


def test_a_failing_worker_is_one_line(tmp_path: Path) -> None:
    done = _play(tmp_path / "spool", tmp_path, "--workers", "2", "--episodes", "2", "--env-kwarg", "frameskip=-3")
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "frameskip" in done.stderr, done.stderr


def _wait_for_partials(spool: Path, count: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(list(spool.glob("*" + PARTIAL_SUFFIX))) < count:
        assert proc.poll() is None, "gymrec-play ended before its workers started episodes"
        assert time.monotonic() < deadline, "the workers never started"
        time.sleep(0.05)


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_one_signal_stops_every_worker_with_every_episode_sealed(how: str, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    proc = subprocess.Popen(
        [str(BIN / "gymrec-play"), BREAKOUT, "--agent", "random", "--headless", "--workers", "2", "--episodes",
         "400", "--seed", "3", "--spool", str(spool)],
        cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a shell gives a job: Ctrl-C reaches all of it
    )  # fmt: skip
    try:
        _wait_for_partials(spool, 2, proc)
        workers = psutil.Process(proc.pid).children()
        assert len(workers) == 2
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)  # the parent alone: it stops the workers
        else:
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: every process of the job
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert not list(spool.glob("*" + PARTIAL_SUFFIX)), "an episode was left unsealed"
        sealed = [Path(line) for line in out.decode().splitlines() if line.endswith(SEALED_SUFFIX)]
        # A worker stopped outside its step loop leaves its episode to recovery, which the parent runs.
        assert sealed and set(sealed) <= set(spool.glob("*" + SEALED_SUFFIX))
        episodes = [Episode(p) for p in spool.glob("*" + SEALED_SUFFIX)]
        # A worker stopped mid-game keeps its episode as quit, with its steps; one stopped between two
        # games starts no new one. Only a stop landing between an episode's start and its first step
        # leaves an empty episode: sealed as discarded, never listed or counted (tests/test_endings.py).
        assert {e.end_reason for e in episodes} <= {"terminated", "quit", "recovered", "discarded"}
        assert all(e.length > 0 for e in episodes if e.end_reason != "discarded")
        assert all(e.length == 0 and e.path not in sealed for e in episodes if e.end_reason == "discarded")
        kept = sum(e.length for e in episodes if e.path in sealed)  # the summary counts what the workers sealed
        assert f"{len(sealed)} episode(s), {kept} steps" in err.decode()
        played = [e for e in episodes if e.length]
        replayed = run_cli("gymrec-replay", "--all", "--spool", str(spool), cwd=tmp_path, timeout=600)
        assert replayed.returncode == 0 and replayed.stdout.count("identical") == len(played), replayed.stdout
        assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
