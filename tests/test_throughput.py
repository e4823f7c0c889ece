"""Per-episode costs gone: ALE episodes start from a plain reset and a stored start state, every
episode still replays alone and bit-exact; replay reuses one env per (env id, kwargs)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import termios
from pathlib import Path

import pytest

from gymrec.replay.verify import EnvPool, VerifyOptions, verify
from gymrec.shared.envs.backends import make_env
from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import resign
from gymrec.shared.spool.recovery import recover_orphans
from gymrec.shared.spool.sources import SpoolSource
from gymrec.shared.spool.spaces import encode_action, split_observation
from tests.conftest import BIN, record, run_cli
from tests.recording import new_attrs
from tests.replay_helpers import copy_episode


def _attrs(path: Path) -> dict:
    return json.loads((path / "zarr.json").read_text())["attributes"]


def _set_attrs(path: Path, **changes: object) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    for key, value in changes.items():
        if value is None:
            meta["attributes"].pop(key, None)
        else:
            meta["attributes"][key] = value
    meta["attributes"] = resign(meta["attributes"])  # edited on purpose: re-signed
    (path / "zarr.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("env_id", [
    "BreakoutNoFrameskip-v4",
    "Breakout-v4",  # stochastic frameskip: drawn from the env's np_random, which the start state holds
])  # fmt: skip
def test_ale_episodes_start_from_a_stored_state_and_replay_alone(env_id: str, tmp_path: Path, spool: Path) -> None:
    sealed = record(env_id, spool, tmp_path, 120, 4, "--episodes", "3")
    assert len(sealed) == 3
    starts = [_attrs(p)["start_state"] for p in sealed]
    # Only the session's first episode is seeded (the ROM reloads once); each stores its start state.
    assert sorted(s["seeded"] for s in starts) == [False, False, True]
    assert {s["codec"] for s in starts} == {"xor-zstd"} and max(len(s["data"]) for s in starts) < 200
    for path in sealed:  # each alone, in a fresh process: nothing from the episodes before it
        out = run_cli("gymrec-replay", str(path), cwd=tmp_path)
        assert out.returncode == 0 and "identical" in out.stdout, out.stdout + out.stderr
    out = run_cli("gymrec-replay", "--all", "--spool", str(spool), cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.count("identical") == 3, out.stdout + out.stderr


def test_every_seed_stays_exact(tmp_path: Path, spool: Path) -> None:
    """Without its start state a later episode still replays from its seed alone (a Minari export
    relies on that): without sticky actions the start is canonical and np_random is reseeded."""
    sealed = record("Breakout-v4", spool, tmp_path, 200, 6, "--episodes", "3")
    copies = tmp_path / "copies"
    for path in sealed:
        copy = copy_episode(path, copies)
        _set_attrs(copy, start_state=None)
    out = run_cli("gymrec-replay", "--all", "--spool", str(copies), cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.count("identical") == 3, out.stdout + out.stderr


def test_sticky_envs_reseed_every_episode(tmp_path: Path, spool: Path) -> None:
    """v5's sticky actions draw on ALE's RNG, which only reset(seed) (a ROM reload) seeds."""
    sealed = record("ALE/Pong-v5", spool, tmp_path, 150, 6, "--episodes", "2")
    assert all("start_state" not in _attrs(p) for p in sealed)
    out = run_cli("gymrec-replay", "--all", "--spool", str(spool), cwd=tmp_path)
    assert out.returncode == 0 and out.stdout.count("identical") == 2, out.stdout + out.stderr


def test_an_unrestorable_state_is_one_line_and_the_seed_is_used_where_exact(tmp_path: Path, spool: Path) -> None:
    sealed = record("BreakoutNoFrameskip-v4", spool, tmp_path, 100, 8, "--episodes", "2")
    copies = tmp_path / "copies"
    for path in sealed:
        copy = copy_episode(path, copies)
        start = _attrs(copy)["start_state"]
        _set_attrs(copy, start_state={**start, "ale_py": "0.0.1"})  # as if saved by another ale-py
        out = run_cli("gymrec-replay", str(copy), cwd=tmp_path)
        if start["seeded"]:  # the session's first episode: reset(seed) is exact, so it falls back
            assert out.returncode == 0 and "identical" in out.stdout
            assert "cannot be restored" in out.stderr and "replaying from the seed" in out.stderr
        else:
            assert out.returncode == 2 and "Traceback" not in out.stderr
            assert len(out.stderr.strip().splitlines()) == 1 and "ale-py 0.0.1" in out.stderr


def test_a_damaged_state_is_caught_by_its_hash(tmp_path: Path, spool: Path) -> None:
    (path,) = record("BreakoutNoFrameskip-v4", spool, tmp_path, 80, 9)
    copy = copy_episode(path, tmp_path / "copies")
    start = _attrs(copy)["start_state"]
    _set_attrs(copy, start_state={**start, "xxh3": "0" * 16})
    out = run_cli("gymrec-replay", str(copy), cwd=tmp_path)
    assert out.returncode == 0 and "does not decode to the state that was saved" in out.stderr


def test_recovery_restores_the_start_state_of_a_later_episode(spool: Path, tmp_path: Path) -> None:
    """A recorder killed during a session's second episode: recovery re-simulates from its start state
    (Breakout-v4: its stochastic frameskip draws on np_random, which the first episode moved on)."""
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import episode_attrs
    from gymrec.shared.spool.writer import EpisodeWriter

    made = make_env("Breakout-v4", {})
    env = made.env
    try:
        made.starter.start(1)
        env.action_space.seed(2)
        for _ in range(150):  # the first episode moves np_random on
            env.step(env.action_space.sample())
        started = made.starter.start(5)
        assert "start_state" in started.attrs
        attrs = new_attrs(episode_attrs(PlayConfig(env_id="Breakout-v4", spool=spool, agent="random"), made, 5, 15.0,
                                        None) | started.attrs)
        writer = EpisodeWriter.create(spool, attrs)
        obs, info = started.obs, started.info
        for _ in range(150):
            action = env.action_space.sample()
            writer.record(split_observation(obs), encode_action(attrs.action_space, action), info)
            obs, reward, terminated, truncated, info = env.step(action)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
        writer.close_without_sealing()
    finally:
        env.close()
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and result.error == "", result.error
    assert result.checked_steps == 128 and result.rebuilt_steps == 22
    assert verify(SpoolSource(result.sealed), VerifyOptions(diff_dir=tmp_path)).status == "identical"


def test_replay_reuses_one_env_per_id_and_kwargs(tmp_path: Path, spool: Path, workdir: Path) -> None:
    breakout = record("BreakoutNoFrameskip-v4", spool, workdir, 60, 3, "--episodes", "2")
    doom = record("VizdoomBasic-v1", spool, workdir, 40, 3, "--episodes", "2")
    other = record("BreakoutNoFrameskip-v4", spool, workdir, 60, 3, "--env-kwarg", "mode=0")
    options = VerifyOptions(diff_dir=tmp_path / "diffs")
    with EnvPool() as envs:
        # VizDoom in between: each episode starts as recorded whatever the env ran before.
        for path in [breakout[0], *doom, breakout[1], *other]:
            assert verify(SpoolSource(path), options, envs=envs).status == "identical", path
        a, b = (envs.get(SpoolSource(p).attrs) for p in breakout)
        assert a is b and envs.get(SpoolSource(other[0]).attrs) is not a
        assert envs.get(SpoolSource(doom[0]).attrs) is envs.get(SpoolSource(doom[1]).attrs)


def _run_on_a_pty(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal, as in a user's shell; returns (exit code, what stderr showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a real terminal has a size
    proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    shown = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        return proc.wait(timeout=120), shown.decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_progress_shows_on_a_terminal_only(tmp_path: Path, spool: Path) -> None:
    play = [str(BIN / "gymrec-play"), "BreakoutNoFrameskip-v4", "--agent", "random", "--headless", "--episodes", "3",
            "--max-steps", "300", "--seed", "1", "--spool", str(spool)]
    piped = subprocess.run(play, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "steps/s" not in piped.stderr and "\r" not in piped.stderr
    assert piped.stderr.strip().splitlines() == ["3 episode(s), 900 steps recorded in " + str(spool)]
    code, shown = _run_on_a_pty(play, tmp_path)
    assert code == 0 and "steps/s" in shown and "3/3 ep" in shown
    replay = [str(BIN / "gymrec-replay"), "--all", "--spool", str(spool)]
    piped = subprocess.run(replay, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and piped.stderr == ""
    code, shown = _run_on_a_pty(replay, tmp_path)
    assert code == 0 and "steps/s" in shown and "6/6 ep" in shown


def test_bench_rows_run_through_the_cli(tmp_path: Path, spool: Path) -> None:
    from bench import cli_bench

    recorded = cli_bench.record(spool, tmp_path, episodes=2)
    assert recorded.steps > 0 and recorded.rate > 0 and recorded.cpu > 0
    assert cli_bench.replay(spool, tmp_path, recorded.steps).rate > 0
    assert cli_bench.plain_loop(tmp_path, episodes=1).steps > 0
    assert len(list(spool.glob("*" + schema.SEALED_SUFFIX))) == 2
