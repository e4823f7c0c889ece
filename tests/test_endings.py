"""Every way a session ends seals episodes that ``gymrec-replay`` calls identical (issue 19, docs/endings.md).

One test per family of endings: an agent's own endings and its mistakes (real CLI, one spool), a
person's (real window on the dummy driver, posted events), stop signals mid-episode (a paced agent
that cannot finish a Pong game before the signal lands), ``--workers`` stopped, and a SIGKILL then
recovery. Each asserts the end reason and the steps kept, and that replay says ``identical`` for
every sealed episode, the discarded ones named explicitly (``--all`` skips them).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import pygame
import pytest

from gymrec.recorder.cli import summary
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import EndChoice, HumanController, StepView, TakeoverController
from gymrec.recorder.interrupts import Interrupts
from gymrec.recorder.session import Session, SessionResult, agent_source
from gymrec.recorder.tracked_source import TrackedSource
from gymrec.recorder.window import GameWindow
from gymrec.shared.cli.progress import NoProgress
from gymrec.shared.envs.backends import make_env
from gymrec.shared.errors import AgentFailedError
from gymrec.shared.keymaps.keymap import ActionResolver, Keymap, build_resolver, load_keymap
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import partial_episodes, sealed_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.spool.sinks import Sink
from tests.conftest import BIN, run_cli
from tests.reliability_helpers import committed_steps
from tests.test_play_human import DOWN, UP, Script, ScriptedClock, play, tap

PONG = "PongNoFrameskip-v4"  # a random player's game lasts thousands of steps: a signal lands mid-episode
# Paced so a signal always finds the episode under way; the ball moves every frame, so a stale final
# observation cannot pass for the right one.
PACED = "import random, time\ndef act(obs):\n    time.sleep(0.002)\n    return random.randrange(6)\n"
BAD_AGENTS = '''
import math

def _after(n, bad):
    state = {"steps": 0}
    def act(obs):  # moves the paddle and fires for n steps (the frames change), then returns ``bad``
        state["steps"] += 1
        return bad if state["steps"] > n else state["steps"] % 4
    return act

ninety_nine = _after(70, 99)
minus_one = _after(70, -1)
nan = _after(70, math.nan)
none = _after(70, None)
text = _after(70, "LEFT")

def raises(obs, _state={"steps": 0}):
    _state["steps"] += 1
    if _state["steps"] > 100:
        raise ZeroDivisionError("the policy divided by zero")
    return _state["steps"] % 4
'''


def verdicts(spool: Path, cwd: Path, discarded: tuple[Path, ...] = ()) -> dict[str, str]:
    """Replay's verdict per sealed episode id: ``--all`` for the kept ones, each discarded one by name."""
    out: dict[str, str] = {}
    runs = [("--spool", str(spool), "--all")] + [(str(p),) for p in discarded]
    for args in runs:
        done = run_cli("gymrec-replay", *args, "--diff-dir", str(cwd / "diffs"), cwd=cwd, timeout=600)
        assert "Traceback" not in done.stderr and done.returncode in (0, 1), done.stdout + done.stderr
        for line in done.stdout.splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 4:
                out[fields[0]] = fields[3]
    return out


def assert_all_identical(spool: Path, cwd: Path) -> list[Episode]:
    """Every sealed episode of ``spool`` replays identical; returns them (nothing left for recovery)."""
    assert not partial_episodes(spool), "an episode was left unsealed"
    episodes = [Episode(p) for p in sealed_episodes(spool)]
    assert all(e.end_reason == schema.EndReason.DISCARDED for e in episodes if e.length == 0)
    played = [e for e in episodes if e.length]  # replay refuses an episode with no steps: nothing to prove
    discarded = tuple(e.path for e in played if e.end_reason == schema.EndReason.DISCARDED)
    found = verdicts(spool, cwd, discarded)
    assert {e.id[:8]: found.get(e.id[:8]) for e in played} == {e.id[:8]: "identical" for e in played}
    return episodes


def window_session(config: PlayConfig, clock: ScriptedClock,
                   controller: Callable[[GameWindow, Keymap, ActionResolver], HumanController],
                   interrupts: Interrupts | None = None) -> SessionResult:
    """A session in a real window (dummy driver) driven by ``clock``'s posted events, with the keymap
    ``config`` names; ``interrupts``: installed for Ctrl-C and SIGTERM, as gymrec-play does."""
    made = make_env(config.env_id, dict(config.env_kwargs))
    keymap = load_keymap(made.backend, config.keymap_path)
    window = GameWindow(title="test", fps=1000.0, scale=1, help_lines=[], clock=clock)
    window.open((210, 160, 3))
    pygame.event.clear()  # the window-shown events SDL queues on open
    source = controller(window, keymap, build_resolver(keymap, made.env))
    previous = interrupts.install() if interrupts is not None else {}
    try:
        return Session(config, made, source, interrupts).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        source.close()
        made.env.close()


def by_reason(episodes: list[Episode]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for episode in episodes:
        found.setdefault(episode.end_reason, []).append(episode.length)
    return {k: sorted(v) for k, v in found.items()}


# --- an agent's endings and mistakes ------------------------------------------------------------------


@pytest.mark.slow  # CLI runs in subprocesses: make test, not make check
def test_agent_endings_and_mistakes_all_replay_identical(spool: Path, workdir: Path) -> None:
    (workdir / "bad_agents.py").write_text(BAD_AGENTS)
    play_args = ("--headless", "--seed", "1", "--spool", str(spool))
    runs: list[tuple[tuple[str, ...], int]] = [
        (("ALE/Breakout-v5", "--agent", "random"), 0),  # terminated: the game is over
        (("ALE/Breakout-v5", "--agent", "random", "--env-kwarg", "max_episode_steps=40"), 0),  # the env's time limit
        (("ALE/Breakout-v5", "--agent", "random", "--max-steps", "30"), 0),  # --max-steps
    ]
    runs += [(("ALE/Breakout-v5", "--agent", f"bad_agents:{name}"), AgentFailedError.exit_code)
             for name in ("ninety_nine", "minus_one", "nan", "none", "text", "raises")]
    for args, code in runs:
        done = run_cli("gymrec-play", *args, *play_args, cwd=workdir, env={"PYTHONPATH": str(workdir)})
        assert done.returncode == code, (args, done.stderr)
    episodes = assert_all_identical(spool, workdir)
    reasons = by_reason(episodes)
    assert reasons.pop("quit") == [70] * 5 + [100]  # the good steps before the bad action or the exception
    assert reasons.pop("truncated") == [30, 40] and set(reasons) == {"terminated"}
    (ended,) = [e for e in episodes if e.end_reason == "terminated"]
    assert ended.length > 40
    by_max_steps = [e for e in episodes if e.attrs.as_dict().get("truncated_by") == "max_steps"]
    assert [e.length for e in by_max_steps] == [30]
    stopped = sorted(str(e.attrs.as_dict().get("stopped_because", "")) for e in episodes if e.end_reason == "quit")
    assert all("bad_agents" in s for s in stopped) and any("ZeroDivisionError" in s for s in stopped)


# --- a person's endings -------------------------------------------------------------------------------


def test_human_endings_all_replay_identical(spool: Path, workdir: Path) -> None:
    right = pygame.K_RIGHT
    script: Script = {
        0: tap(pygame.K_n), 1: [(DOWN, right)],  # episode 1: RIGHT for 3 steps (--max-steps) ...
        5: [(UP, right)], 6: tap(pygame.K_BACKSPACE),  # ... discarded on its summary
        7: tap(pygame.K_n), 8: [(DOWN, right)], 11: tap(pygame.K_BACKSPACE),  # episode 2: Backspace mid-game
        13: tap(pygame.K_n), 14: [(UP, right)], 16: tap(pygame.K_n),  # episode 3: truncated (3), next
        17: tap(pygame.K_n), 18: [(DOWN, right)], 20: [(UP, right), (DOWN, pygame.K_ESCAPE)],  # episode 4: Esc
    }
    first, second, third, fourth = play("BreakoutNoFrameskip-v4", script, spool, max_steps=3)
    assert (first.end_reason, first.attrs.discarded_after, first.length) == ("discarded", "truncated", 3)
    assert second.end_reason == "discarded" and 0 < second.length < 3
    assert (third.end_reason, third.length) == ("truncated", 3)
    assert fourth.end_reason == "quit" and 0 < fourth.length < 3
    # the window closed (the title bar's close button posts pygame.QUIT), mid-episode
    closed = spool.parent / "closed"
    closed.mkdir()
    (shut,) = play("BreakoutNoFrameskip-v4", {0: tap(pygame.K_n), 1: [(DOWN, right)],
                                             5: [(pygame.QUIT, 0)]}, closed)
    assert shut.end_reason == "quit" and shut.length >= 3
    assert_all_identical(spool, workdir)
    assert_all_identical(closed, workdir)


class _CtrlCAt(ScriptedClock):
    """A player's clock on which Ctrl-C arrives while the window waits out frame ``at``."""

    def __init__(self, script: Script, at: int) -> None:
        super().__init__(script)
        self.at = at

    def wait(self, not_before: float | None = None) -> float:
        if self.waits == self.at:
            signal.raise_signal(signal.SIGINT)
        return super().wait(not_before)


def test_ctrl_c_during_human_play_seals_what_was_played(spool: Path, workdir: Path) -> None:
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=spool, seed=4, fps=1000.0)
    clock = _CtrlCAt({0: tap(pygame.K_n), 1: [(DOWN, pygame.K_RIGHT)]}, at=6)
    result = window_session(config, clock, lambda window, keymap, resolver: HumanController(window, resolver, None),
                            Interrupts())
    (episode,) = [Episode(p) for p in result.sealed]
    assert episode.end_reason == "quit" and episode.length >= 3
    assert_all_identical(spool, workdir)


def test_branch_and_takeover_endings_replay_identical(spool: Path, workdir: Path) -> None:
    script: Script = {
        0: tap(pygame.K_n), 1: [(DOWN, pygame.K_RIGHT)],
        11: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_r)], 14: [(UP, pygame.K_r)],  # rewind to step 7: a branch
        17: [(DOWN, pygame.K_ESCAPE)],
    }
    parent, branch = play("BreakoutNoFrameskip-v4", script, spool)
    assert (parent.end_reason, branch.end_reason) == ("branched", "quit")
    taken = spool.parent / "takeover"
    taken.mkdir()
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=taken, seed=4, fps=1000.0, agent="tests:fire",
                        takeover=True)
    takeover: Script = {0: tap(pygame.K_n), 3: tap(pygame.K_t), 4: [(DOWN, pygame.K_LEFT)],
                        6: [(UP, pygame.K_LEFT), (DOWN, pygame.K_t), (UP, pygame.K_t)], 9: [(DOWN, pygame.K_ESCAPE)]}
    result = window_session(config, ScriptedClock(takeover), lambda window, keymap, resolver: TakeoverController(
        window, resolver, {"source": keymap.source}, lambda _obs: 1, "tests:fire"))
    (episode,) = [Episode(p) for p in result.sealed]
    assert episode.end_reason == "quit" and episode.length > 3
    assert_all_identical(spool, workdir)
    assert_all_identical(taken, workdir)


# --- stop signals -------------------------------------------------------------------------------------


class _SignalDuringStep(gym.Wrapper):  # type: ignore[type-arg]
    """The env raises SIGINT inside its own ``step`` number ``at``: the worst moment for a Ctrl-C."""

    def __init__(self, env: gym.Env, at: int) -> None:  # type: ignore[type-arg]
        super().__init__(env)
        self.at, self.count = at, 0

    def step(self, action: Any) -> Any:
        self.count += 1
        if self.count == self.at:
            signal.raise_signal(signal.SIGINT)  # the handler runs here, mid-step
        return self.env.step(action)


def test_a_ctrl_c_inside_env_step_waits_for_the_step_and_seals_it(spool: Path) -> None:
    made = make_env("BreakoutNoFrameskip-v4", {})
    made = dataclasses.replace(made, env=_SignalDuringStep(made.env, 57))
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=spool, seed=3, episodes=1, agent="random",
                        headless=True)
    interrupts = Interrupts()
    previous = interrupts.install()
    try:
        result = Session(config, made, agent_source(config, made), interrupts).run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        made.env.close()
    (episode,) = [Episode(p) for p in result.sealed]
    assert (episode.end_reason, episode.length) == ("quit", 57)  # the interrupted step is whole and kept
    assert_all_identical(spool, spool.parent)


def _paced(cwd: Path) -> dict[str, str]:
    (cwd / "paced_agent.py").write_text(PACED)
    return {"PYTHONPATH": str(cwd)}


def _start_and_wait(spool: Path, cwd: Path, count: int, *extra: str) -> subprocess.Popen[str]:
    """``gymrec-play`` on Pong with the paced agent in its own process group, once ``count`` episodes
    have committed steps (each is then mid-game for seconds)."""
    proc = subprocess.Popen(
        [str(BIN / "gymrec-play"), PONG, "--agent", "paced_agent:act", "--headless", "--seed", "5", "--spool",
         str(spool), *extra], cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True, env={**os.environ, **_paced(cwd)})  # fmt: skip
    deadline = time.monotonic() + 120
    while sum(committed_steps(p) > 0 for p in partial_episodes(spool)) < count:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the recording never started"
        time.sleep(0.01)
    return proc


def _stop(proc: subprocess.Popen[str], how: str) -> tuple[str, str]:
    try:
        if how == "ctrl-c":
            os.killpg(proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: every process of the job
        else:
            proc.send_signal(signal.SIGTERM)  # the recorder alone (kill PID, systemd)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, err  # stopped as asked: not a failure
    return out, err


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_stop_signal_seals_the_episode_as_quit_and_it_replays(how: str, spool: Path, workdir: Path) -> None:
    out, err = _stop(_start_and_wait(spool, workdir, 1), how)
    (episode,) = assert_all_identical(spool, workdir)
    assert episode.end_reason == "quit" and episode.length > 0
    assert out.split() == [str(episode.path)]
    assert err.strip().splitlines()[-1] == f"1 episode(s), {episode.length} steps recorded in {spool}"


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_stopped_workers_seal_their_episodes_as_quit_with_their_steps(how: str, spool: Path, workdir: Path) -> None:
    out, err = _stop(_start_and_wait(spool, workdir, 2, "--workers", "2", "--episodes", "4"), how)
    episodes = assert_all_identical(spool, workdir)
    # each worker was mid-game: its episode is kept as quit with what was played, and nothing is empty
    assert [e.end_reason for e in episodes] == ["quit", "quit"] and all(e.length > 0 for e in episodes)
    assert sorted(out.split()) == sorted(str(e.path) for e in episodes)
    steps = sum(e.length for e in episodes)
    assert err.strip().splitlines()[-1] == f"2 episode(s), {steps} steps recorded in {spool} by 2 workers"


@pytest.mark.slow  # CLI runs in subprocesses: make test, not make check
def test_a_sigkilled_recording_is_recovered_and_replays(spool: Path, workdir: Path) -> None:
    proc = _start_and_wait(spool, workdir, 1)
    os.killpg(proc.pid, signal.SIGKILL)  # the recorder and its writer process: nothing gets to seal
    proc.communicate()
    (orphan,) = partial_episodes(spool)
    first = run_cli("gymrec-replay", "--spool", str(spool), "--all", cwd=workdir, timeout=600)
    assert f"recovered {schema.sealed_name(orphan.stem)}" in first.stderr, first.stderr
    (episode,) = assert_all_identical(spool, workdir)  # that start-up recovery sealed it
    assert episode.end_reason == "recovered" and episode.length >= 64


# --- what a summary counts ----------------------------------------------------------------------------


class _StopAfterFirst(TrackedSource):
    """An agent run whose stop signal arrives while its first episode is being finished: between two
    episodes, where 5 of 6 ``--workers`` interruptions used to seal an empty episode as discarded."""

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        self.stop.requested = True
        return super().finish(view, end)


def test_a_stop_between_episodes_writes_no_empty_episode(spool: Path) -> None:
    made = make_env("ALE/Breakout-v5", {})
    config = PlayConfig(env_id="ALE/Breakout-v5", spool=spool, seed=2, episodes=3, max_steps=20, agent="random",
                        headless=True)
    try:
        source = _StopAfterFirst(agent_source(config, made), NoProgress())
        result = Session(config, made, source).run()
    finally:
        made.env.close()
    assert [Episode(p).length for p in result.sealed] == [20] and not result.discarded
    assert sorted(spool.iterdir()) == result.sealed  # nothing else: no empty episode, no .partial


def test_summaries_count_kept_episodes_and_say_how_many_were_discarded(spool: Path) -> None:
    script: Script = {  # as in test_play_human: 3 episodes of 3 steps, the second discarded on its summary
        0: tap(pygame.K_n), 5: tap(pygame.K_n), 6: tap(pygame.K_n), 10: tap(pygame.K_BACKSPACE), 12: tap(pygame.K_n),
        13: tap(pygame.K_n), 18: tap(pygame.K_ESCAPE),
    }
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=spool, seed=4, fps=1000.0, max_steps=3)
    result = window_session(config, ScriptedClock(script),
                            lambda window, keymap, resolver: HumanController(window, resolver, None))
    (discarded,) = result.discarded
    assert Episode(discarded).end_reason == "discarded" and [Episode(p).length for p in result.kept] == [3, 3]
    assert result.steps == 6  # the discarded episode's steps are not counted
    line = summary(len(result.kept), result.steps, len(result.discarded), spool)
    assert line == f"2 episode(s), 6 steps recorded in {spool}; 1 discarded (kept in the spool, never uploaded)"
    assert summary(2, 9, 0, spool, workers=2) == f"2 episode(s), 9 steps recorded in {spool} by 2 workers"


def test_a_ctrl_c_while_the_writer_process_starts_does_not_kill_it(spool: Path) -> None:
    """Ctrl-C reaches the whole process group, the writer process too, maybe while it still imports
    (seconds on a loaded machine): it must wait until it ignores the signal, not die of it."""
    made = make_env("BreakoutNoFrameskip-v4", {})
    config = PlayConfig(env_id="BreakoutNoFrameskip-v4", spool=spool, seed=1, episodes=1, max_steps=100,
                        agent="random", headless=True)
    try:
        with Sink(process=True) as sink:
            assert sink.child_pid is not None
            os.kill(sink.child_pid, signal.SIGINT)  # right after its start: it is still importing
            os.kill(sink.child_pid, signal.SIGTERM)
            result = Session(config, made, agent_source(config, made)).run(sink)
    finally:
        made.env.close()
    (episode,) = [Episode(p) for p in result.sealed]
    assert episode.length == 100
    assert_all_identical(spool, spool.parent)
