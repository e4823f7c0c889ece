"""SIGKILL the recorder mid-episode; recovery must restore every journaled step, bit for bit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from gymrec.shared.envs.backends import make_env, make_env_for
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.directory import partial_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import FAILED_NOTE, recover_orphans
from gymrec.shared.spool.writer import EpisodeWriter
from tests.conftest import BIN
from tests.recording import new_attrs
from tests.reliability_helpers import committed_steps

PACED_AGENT = """
import random, time
def act(observation):  # a random player held to ~500 steps/s, so the kill lands mid-episode on any machine
    time.sleep(0.002)
    return random.randrange(3)
"""


def kill_mid_episode(env_id: str, spool: Path, cwd: Path, seed: int, min_steps: int) -> Path:
    """Start a headless recording and SIGKILL it once ``min_steps`` steps are committed.

    The agent is paced: the writer commits at most about once a second (its sync passes), and an
    unpaced random agent can finish a whole Pong game in about that time.
    """
    (cwd / "paced_agent.py").write_text(PACED_AGENT)
    proc = subprocess.Popen([str(BIN / "gymrec-play"), env_id, "--agent", "paced_agent:act", "--headless", "--seed",
                             str(seed), "--spool", str(spool)], cwd=cwd, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(cwd)})
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            partials = list(spool.glob("*.partial"))
            # committed_steps reads the marker safely while the writer replaces it (no exists-then-read race)
            if partials and committed_steps(partials[0]) >= min_steps:
                break
            assert proc.poll() is None, "the recorder finished before it could be killed"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:  # an assert above failed: don't leave the recording running
            proc.kill()
        proc.wait()
    (partial,) = partial_episodes(spool)
    return partial


def recover_when_free(spool: Path, timeout: float = 20) -> list:  # type: ignore[type-arg]
    """Recovery skips an episode while the dead recorder's writer process still drains its chunks."""
    deadline = time.monotonic() + timeout
    while not (results := recover_orphans(spool)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return results


def assert_matches_simulation(episode: Episode) -> None:
    made = make_env_for(episode.attrs)
    try:
        obs, _ = made.env.reset(seed=episode.attrs.seed)
        image = episode.attrs.image_key
        hashes = episode.hashes(image, 0, episode.length + 1)
        for t, action in enumerate(episode.actions()):
            frame = obs[image] if isinstance(obs, dict) else obs
            assert int(hashes[t]) == schema.row_hash(frame), f"step {t}"
            obs, *_ = made.env.step(action)
        final = obs[image] if isinstance(obs, dict) else obs
        assert np.array_equal(episode.final_obs()[image], final)
    finally:
        made.env.close()


@pytest.mark.parametrize(("env_id", "min_steps"), [("PongNoFrameskip-v4", 200), ("VizdoomMyWayHome-v1", 200)])
def test_sigkill_loses_no_step(env_id: str, min_steps: int, spool: Path, workdir: Path) -> None:
    partial = kill_mid_episode(env_id, spool, workdir, seed=21, min_steps=min_steps)
    journal_format = schema.JournalFormat(tuple(Episode(partial, trusted_length=0).action_leaves))
    timestamps = journal_format.unpack_all((partial / schema.JOURNAL_NAME).read_bytes()).timestamps
    journal_steps = len(timestamps)
    committed = json.loads((partial / schema.COMMITTED_NAME).read_text())["steps"]
    assert journal_steps >= committed >= min_steps

    (result,) = recover_when_free(spool)
    assert result.sealed is not None and result.error == ""
    assert result.checked_steps >= committed and result.checked_steps + result.rebuilt_steps == journal_steps
    assert not partial.exists()
    episode = Episode(result.sealed)
    assert episode.end_reason == "recovered" and episode.length == journal_steps
    assert episode.attrs.recovery is not None and episode.attrs.recovery["journal_steps"] == journal_steps
    assert_matches_simulation(episode)


def _attrs(env_id: str = "ALE/Pong-v5", seed: int = 4) -> tuple[EpisodeAttrs, object]:
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import episode_attrs

    made = make_env(env_id, {})
    attrs = new_attrs(episode_attrs(PlayConfig(env_id=env_id, spool=Path("."), agent="random"), made, seed, 15.0, None))
    return attrs, made


def _play(writer: EpisodeWriter, made, seed: int, steps: int) -> tuple[object, list[int]]:  # type: ignore[no-untyped-def]
    obs, info = made.env.reset(seed=seed)
    actions = []
    for t in range(steps):
        action = t % made.env.action_space.n
        writer.record({"frame": obs}, {"value": np.int64(action)}, info)
        obs, reward, term, trunc, info = made.env.step(action)
        writer.outcome(reward, term, trunc, info)
        actions.append(action)
    return obs, actions


def test_a_live_writers_episode_is_left_alone(spool: Path) -> None:
    attrs, made = _attrs()
    writer = EpisodeWriter.create(spool, attrs)
    obs, _ = _play(writer, made, 4, 70)
    assert recover_orphans(spool) == []
    writer.seal({"frame": obs}, schema.EndReason.QUIT)
    assert Episode(spool / schema.sealed_name(attrs.episode_id)).length == 70


def test_a_torn_journal_record_is_ignored(spool: Path) -> None:
    attrs, made = _attrs(seed=9)
    writer = EpisodeWriter.create(spool, attrs)
    _, actions = _play(writer, made, 9, 100)
    writer.close_without_sealing()  # as if killed: chunk 0 committed, 36 steps only in the journal
    partial = spool / schema.partial_name(attrs.episode_id)
    with open(partial / schema.JOURNAL_NAME, "ab") as f:
        f.write(b"\x01\x02\x03")  # half a record: the process died mid-write
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and (result.checked_steps, result.rebuilt_steps) == (64, 36)
    episode = Episode(result.sealed)
    assert episode.actions() == actions
    assert_matches_simulation(episode)


def test_an_unreproducible_episode_is_kept_with_a_note(spool: Path) -> None:
    attrs, made = _attrs(seed=13)
    writer = EpisodeWriter.create(spool, attrs)
    _play(writer, made, 13, 80)
    writer.close_without_sealing()
    partial = spool / schema.partial_name(attrs.episode_id)
    # Claim another seed: re-simulation now disagrees with the committed chunk.
    import zarr

    zarr.open_group(str(partial), mode="r+").attrs["seed"] = 14
    (result,) = recover_orphans(spool)
    assert result.sealed is None and "differs at step" in result.error
    assert partial.is_dir() and (partial / FAILED_NOTE).exists()
    assert (partial / schema.JOURNAL_NAME).stat().st_size > 0, "nothing was deleted"
    assert recover_orphans(spool) == [], "a failed recovery is not retried in a loop"


def test_a_kill_before_the_first_chunk_is_rebuilt_from_the_journal_alone(spool: Path) -> None:
    attrs, made = _attrs(seed=5)
    writer = EpisodeWriter.create(spool, attrs)
    _, actions = _play(writer, made, 5, 30)
    writer.close_without_sealing()
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and (result.checked_steps, result.rebuilt_steps) == (0, 30)
    assert Episode(result.sealed).actions() == actions
