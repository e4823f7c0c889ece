"""No display, no human play: the CLI refuses it (and ``gymrec-replay --render``) with one line, writing nothing.

The suite runs with SDL's dummy video driver, which is exactly the "no display" case. Human play
itself is tested in process (tests/test_play_human.py), driving the session with posted events.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gymrec.shared.spool.episode import Episode
from tests.conftest import record, run_cli
from tests.test_recorder_errors import assert_one_line_error

NO_X = {"DISPLAY": "", "WAYLAND_DISPLAY": ""}


@pytest.mark.parametrize(("args", "env"), [
    (["ALE/Breakout-v5"], {}),  # dummy driver
    (["ALE/Breakout-v5"], {"SDL_VIDEODRIVER": "offscreen"}),
    (["ALE/Breakout-v5", "--agent", "random"], {}),  # an agent in a window nobody sees
    (["ALE/Breakout-v5", "--step-mode"], {}),
])
def test_play_without_a_display_is_refused_and_writes_nothing(args: list[str], env: dict[str, str], tmp_path: Path,
                                                              workdir: Path) -> None:
    spool = tmp_path / "spool"
    proc = run_cli("gymrec-play", *args, "--spool", str(spool), cwd=workdir, env=env)
    line = assert_one_line_error(proc, "no display", "shows nothing", "--headless")
    assert proc.returncode == 2, line
    assert not spool.exists()


def test_play_with_no_video_driver_at_all_is_refused(tmp_path: Path, workdir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY")}
    spool = tmp_path / "spool"
    proc = run_cli("gymrec-play", "ALE/Breakout-v5", "--spool", str(spool), cwd=workdir, env=env | NO_X)
    assert_one_line_error(proc, "no display")
    assert not spool.exists()


def test_replay_render_without_a_display_is_refused(spool: Path, workdir: Path) -> None:
    (path,) = record("ALE/Pong-v5", spool, workdir, 10, 1)
    proc = run_cli("gymrec-replay", str(path), "--render", "--spool", str(spool), cwd=workdir)
    assert_one_line_error(proc, "no display", "--render")
    assert proc.returncode == 2


def test_headless_agents_need_no_display_and_the_hostname_is_opt_in(spool: Path, workdir: Path) -> None:
    (plain,) = record("ALE/Pong-v5", spool, workdir, 10, 1)
    (named,) = record("ALE/Pong-v5", spool, workdir, 10, 1, "--publish-host")
    assert Episode(plain).attrs.host is None
    assert Episode(named).attrs.host == os.uname().nodename


def test_step_mode_is_for_humans(spool: Path, workdir: Path) -> None:
    proc = run_cli("gymrec-play", "ALE/Pong-v5", "--agent", "random", "--headless", "--step-mode",
                   "--spool", str(spool), cwd=workdir)
    assert_one_line_error(proc, "--step-mode")


def test_play_help_lists_the_in_game_keys(workdir: Path) -> None:
    proc = run_cli("gymrec-play", "--help", cwd=workdir)
    assert proc.returncode == 0
    for needle in ("press", "Esc", "Backspace", "F1", "pause", "Game controllers", "--step-mode", "--publish-host"):
        assert needle in proc.stdout, needle


@pytest.mark.parametrize("args", [["--takeover"], ["--takeover", "--agent", "random", "--headless"]])
def test_takeover_needs_an_agent_in_a_window(args: list[str], spool: Path, workdir: Path) -> None:
    proc = run_cli("gymrec-play", "ALE/Pong-v5", *args, "--spool", str(spool), cwd=workdir)
    assert_one_line_error(proc, "--takeover")
