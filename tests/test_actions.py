"""Actions are checked against the action space before they are journaled; bad flags are one line."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gymrec.shared.spool.directory import partial_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.spaces import action_checker, action_problem
from tests.conftest import run_cli
from tests.test_recorder_errors import assert_one_line_error, snapshot

AGENTS = '''
import numpy as np

def _after(n, bad):
    state = {"steps": 0}
    def act(obs):
        state["steps"] += 1
        return bad if state["steps"] > n else 0
    return act

minus_one = _after(70, -1)
ninety_nine = _after(70, 99)
one_point_o = _after(5, 1.0)
wrong_shape = _after(5, np.array([1]))

def raises(obs, _state={"steps": 0}):
    _state["steps"] += 1
    if _state["steps"] > 30:
        raise ZeroDivisionError("the policy divided by zero")
    return 1
'''

DISCRETE = gym.spaces.Discrete(4)


@pytest.mark.parametrize("action", [0, 3, np.int64(2), np.int32(1), np.array(2)])
def test_discrete_actions_that_fit(action: object) -> None:
    assert action_problem(DISCRETE, action) is None


@pytest.mark.parametrize("action", [-1, 4, 99, 1.0, np.float32(1), np.array([1]), "1", None, [1]])
def test_discrete_actions_that_do_not_fit(action: object) -> None:
    assert action_problem(DISCRETE, action) is not None


@pytest.mark.parametrize("space", [DISCRETE, gym.spaces.Discrete(3, start=-1), gym.spaces.MultiBinary(3)])
@pytest.mark.parametrize("action", [-2, -1, 0, 1, 2, 3, 4, True, 2**70, np.int64(2), np.int64(-1), np.int64(4),
                                    np.int32(1), np.uint8(9), np.array(2), 1.0, np.float32(1), np.array([1]),
                                    "1", None, [1], np.zeros(3, np.int8), np.zeros(3)])
def test_the_cached_checker_agrees_with_action_problem(space: gym.Space, action: object) -> None:
    # The session's per-step check (action_checker) must refuse exactly what action_problem refuses,
    # with the same message; 2**70 does not fit an int64 and is refused like any other alien value.
    assert action_checker(space)(action) == action_problem(space, action)
    if action is 2**70:
        assert action_problem(space, action) is not None


def test_exact_dtypes_and_shapes_for_arrays() -> None:
    binary = gym.spaces.MultiBinary(12)
    assert action_problem(binary, np.zeros(12, np.int8)) is None
    assert "dtype float64" in (action_problem(binary, np.zeros(12)) or "")  # contains() alone accepts it
    assert action_problem(binary, np.zeros(11, np.int8)) is not None
    assert action_problem(binary, np.full(12, 2, np.int8)) is not None
    box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert action_problem(box, np.zeros(2, np.float32)) is None
    assert action_problem(box, np.zeros(2, np.float64)) is not None
    assert action_problem(box, np.array([np.nan, 0], np.float32)) is not None
    assert action_problem(box, np.array([2, 0], np.float32)) is not None
    both = gym.spaces.Dict({"binary": binary, "continuous": box})
    good = {"binary": np.zeros(12, np.int8), "continuous": np.zeros(2, np.float32)}
    assert action_problem(both, good) is None
    assert action_problem(both, {"binary": good["binary"]}) is not None
    assert (action_problem(both, {**good, "continuous": np.ones(2)}) or "").startswith("continuous:")


@pytest.mark.parametrize(("agent", "steps", "value"), [
    ("minus_one", 70, "-1"), ("ninety_nine", 70, "99"), ("one_point_o", 5, "1.0"), ("wrong_shape", 5, "array([1])"),
])
def test_a_bad_action_ends_the_session_and_seals_the_good_steps(
        agent: str, steps: int, value: str, spool: Path, workdir: Path) -> None:
    (workdir / "bad_agents.py").write_text(AGENTS)
    proc = run_cli("gymrec-play", "ALE/Breakout-v5", "--agent", f"bad_agents:{agent}", "--headless", "--seed", "1",
                   "--spool", str(spool), cwd=workdir, env={"PYTHONPATH": str(workdir)})
    line = assert_one_line_error(proc, f"bad_agents:{agent}", f"step {steps}", value, "Discrete(4)")
    assert proc.returncode == 2, line
    assert partial_episodes(spool) == []  # sealed, not left for recovery: nothing can poison the spool
    (path,) = spool.glob("*.zarr")
    episode = Episode(path)
    assert episode.length == steps and episode.actions() == [0] * steps
    assert episode.end_reason == "quit" and "does not fit" in (episode.attrs.stopped_because or "")
    # The spool still works: the next run records (recovering nothing) and exits 0.
    again = run_cli("gymrec-play", "ALE/Breakout-v5", "--agent", "random", "--headless", "--max-steps", "5",
                    "--spool", str(spool), cwd=workdir)
    assert again.returncode == 0 and "recover" not in again.stderr, again.stderr


def test_an_agents_exception_is_the_agents_error(spool: Path, workdir: Path) -> None:
    (workdir / "bad_agents.py").write_text(AGENTS)
    proc = run_cli("gymrec-play", "ALE/Breakout-v5", "--agent", "bad_agents:raises", "--headless", "--seed", "1",
                   "--spool", str(spool), cwd=workdir, env={"PYTHONPATH": str(workdir)})
    line = assert_one_line_error(proc, "agent bad_agents:raises raised ZeroDivisionError", "divided by zero",
                                 "step 30")
    assert proc.returncode == 2 and "report it" not in line
    (path,) = spool.glob("*.zarr")
    assert Episode(path).length == 30 and partial_episodes(spool) == []


FLAGS = [
    ("--fps", "nan"), ("--fps", "inf"), ("--fps", "-inf"), ("--fps", "1e-300"), ("--fps", "0"), ("--fps", "1e300"),
    ("--fps", "fast"), ("--scale", "0"), ("--scale", "1e9"), ("--scale", "nan"), ("--seed", "-1"),
    ("--seed", "1e99"), ("--episodes", "0"), ("--episodes", "99999999999999999999"), ("--max-steps", "0"),
    ("--max-steps", "nan"), ("--env-kwarg", "repeat_action_probability=NaN"),
    ("--env-kwarg", "repeat_action_probability=Infinity"),
]


@pytest.mark.parametrize(("flag", "value"), FLAGS, ids=[f"{f}={v}" for f, v in FLAGS])
def test_numeric_flags_reject_nan_inf_and_absurd_values(flag: str, value: str, spool: Path, workdir: Path) -> None:
    before = snapshot(spool)
    proc = run_cli("gymrec-play", "ALE/Pong-v5", "--agent", "random", "--headless", flag, value,
                   "--spool", str(spool), cwd=workdir)
    assert_one_line_error(proc, flag)
    assert snapshot(spool) == before
