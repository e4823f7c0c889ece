"""Rewind and branch: frames come back exactly as recorded, and a branch replays bit-exactly on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pygame
import pytest
import zarr

from gymrec.recorder.rewind import EVERY, Rewinder
from gymrec.replay.verify import VerifyOptions, verify
from gymrec.shared.envs.backends import make_env
from gymrec.shared.spool.schema import ACTORS
from gymrec.shared.spool.sources import SpoolSource
from gymrec.shared.spool.spaces import split_observation
from tests.test_play_human import DOWN, UP, play, tap


def _played(env_id: str, steps: int, seed: int, kwargs: dict[str, object] | None = None,
            ) -> tuple[Rewinder, list[np.ndarray], object]:
    made = make_env(env_id, kwargs or {})
    env = made.env
    image = lambda obs: split_observation(obs)["screen" if isinstance(obs, dict) else "frame"]  # noqa: E731
    rewinder = Rewinder(env, image)
    obs, _ = env.reset(seed=seed)
    rewinder.begin(seed, obs)
    env.action_space.seed(seed)
    frames = [np.array(image(obs))]
    for _ in range(steps):
        action = env.action_space.sample()
        obs = env.step(action)[0]
        rewinder.stepped(action, obs)
        frames.append(np.array(image(obs)))
    return rewinder, frames, env


@pytest.mark.parametrize(("env_id", "snapshots"), [("BreakoutNoFrameskip-v4", 4), ("ALE/Breakout-v5", 1)])
def test_ale_frames_back_are_the_recorded_frames_and_restore_is_exact(env_id: str, snapshots: int) -> None:
    # v5's sticky actions are not in ALE's cloneState: it re-simulates from reset(seed) (one snapshot).
    rewinder, frames, env = _played(env_id, 3 * EVERY + 10, seed=5)
    try:
        back = list(rewinder.frames_back(len(frames) - 1))
        assert [step for step, _ in back] == list(range(len(frames) - 2, -1, -1))
        assert all(np.array_equal(frame, frames[step]) for step, frame in back)
        for target in (0, EVERY, EVERY + 17, len(frames) - 1):
            obs, _ = rewinder.restore_to(target)
            assert np.array_equal(obs, frames[target]), target
        obs = env.step(rewinder.actions[EVERY + 17])[0] if rewinder.restore_to(EVERY + 17) else None
        assert np.array_equal(obs, frames[EVERY + 18])  # the env goes on from there as it did
        assert len(rewinder._snapshots) == snapshots  # noqa: SLF001 (steps 0, 64, 128, 192 without sticky actions)
        assert rewinder.memory_bytes < snapshots * (14_500 + 5_000)
    finally:
        env.close()  # type: ignore[attr-defined]


def test_vizdoom_rewinds_by_resimulating_from_the_start(workdir: Path) -> None:
    rewinder, frames, env = _played("VizdoomBasic-v1", 40, seed=2)
    try:
        back = list(rewinder.frames_back(len(frames) - 1))
        assert all(np.array_equal(frame, frames[step]) for step, frame in back) and back[-1][0] == 0
        obs, _ = rewinder.restore_to(25)
        assert np.array_equal(obs["screen"], frames[25])
    finally:
        env.close()  # type: ignore[attr-defined]


def test_rewind_then_play_on_makes_a_branch_that_replays_bit_exactly(spool: Path, tmp_path: Path) -> None:
    script = {
        0: tap(pygame.K_n), 1: [(DOWN, pygame.K_RIGHT)],  # ten steps of RIGHT
        11: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_r)],  # hold R: frames 9, 8, 7 go by ...
        14: [(UP, pygame.K_r)],  # ... released on step 7: play on from there
        17: [(DOWN, pygame.K_ESCAPE)],  # two more steps, then quit
    }
    parent, branch = play("BreakoutNoFrameskip-v4", script, spool)
    assert parent.end_reason == "branched" and parent.length == 10 and parent.attrs.branched_at == 7
    assert parent.actions() == [2] * 10
    assert branch.attrs.parent_episode_id == parent.attrs.episode_id and branch.attrs.branch_step == 7
    assert branch.attrs.seed == parent.attrs.seed and branch.end_reason == "quit"
    assert branch.actions() == [2] * 7 + [0, 0]
    actors = zarr.open_group(str(branch.path), mode="r")["actor"][:]
    assert [ACTORS[a] for a in actors] == ["copied"] * 7 + ["human"] * 2
    # The branch's first 7 observations are the parent's, and both replay bit-exactly on their own.
    key = parent.attrs.image_key
    assert np.array_equal(branch.obs(key, 0, 8), parent.obs(key, 0, 8))
    for episode in (parent, branch):
        result = verify(SpoolSource(episode.path), VerifyOptions(diff_dir=tmp_path))
        assert result.status == "identical", result


@pytest.mark.parametrize(("env_id", "key"), [("VizdoomBasic-v1", pygame.K_LEFT), ("Airstriker-Genesis-v0", pygame.K_z)])
def test_branches_replay_bit_exactly_on_vizdoom_and_retro(env_id: str, key: int, spool: Path, tmp_path: Path,
                                                          workdir: Path) -> None:
    script = {
        0: tap(pygame.K_n), 1: [(DOWN, key)],
        9: [(UP, key), (DOWN, pygame.K_r)], 12: [(UP, pygame.K_r)],  # back to step 5
        14: [(DOWN, pygame.K_BACKSPACE)],  # discard the branch: the parent stays, branched
        15: tap(pygame.K_n), 17: [(DOWN, pygame.K_ESCAPE)],
    }
    parent, branch, after = play(env_id, script, spool)
    assert parent.end_reason == "branched" and parent.length == 8 and parent.attrs.branched_at == 5
    assert branch.attrs.parent_episode_id == parent.attrs.episode_id and branch.end_reason == "discarded"
    assert branch.length == 6 and after.attrs.parent_episode_id is None and after.length == 1
    actors = zarr.open_group(str(branch.path), mode="r")["actor"][:]
    assert [ACTORS[a] for a in actors] == ["copied"] * 5 + ["human"]
    for episode in (parent, branch):
        result = verify(SpoolSource(episode.path), VerifyOptions(diff_dir=tmp_path))
        assert result.status == "identical", result


def test_rewinding_does_not_count_towards_the_time_limit() -> None:
    import gymnasium as gym

    rewinder, frames, env = _played("BreakoutNoFrameskip-v4", 2 * EVERY, seed=1, kwargs={"max_episode_steps": 10_000})
    limit = env
    while not isinstance(limit, gym.wrappers.TimeLimit):
        limit = limit.env  # type: ignore[attr-defined]
    try:
        assert limit._elapsed_steps == 2 * EVERY
        list(rewinder.frames_back(2 * EVERY))
        rewinder.restore_to(2 * EVERY)
        assert limit._elapsed_steps == 2 * EVERY  # the re-simulated steps were not counted
    finally:
        env.close()  # type: ignore[attr-defined]
