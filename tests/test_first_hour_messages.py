"""Issue 22's messages: what a new user reads in the first hour is one line, in gymrec's own words."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from gymrec.export.strip import status_line
from gymrec.shared.cli.edge import EXIT_CLOSED_PIPE
from gymrec.shared.errors import KeymapError
from gymrec.shared.keymaps.keymap import load_keymap
from tests.conftest import BIN, record, run_cli
from tests.recording import record_episode
from tests.test_recorder_errors import assert_one_line_error


def _without(*names: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in names}


@pytest.mark.parametrize("args", [["gymrec-play", "ALE/Breakout-v5"], ["gymrec-replay", "--render", "--all"]])
def test_no_display_is_one_line_without_sdl_noise(args: list[str], tmp_path: Path) -> None:
    env = _without("SDL_VIDEODRIVER", "DISPLAY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR") | {"GYMREC_SPOOL": str(tmp_path / "s")}
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    line = assert_one_line_error(proc, "no display", "desktop")
    assert "XDG_RUNTIME_DIR" not in proc.stderr and "offscreen" not in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("args", [["gymrec-play", "--list"], ["gymrec-replay", "--all"]])
def test_a_closed_pipe_ends_quietly(args: list[str], tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    if args[0] == "gymrec-replay":
        record_episode(spool, "BreakoutNoFrameskip-v4", 2, 1)  # one table line meets the closed pipe
    read_fd, write_fd = os.pipe()
    os.close(read_fd)  # `| head` that has already gone: every write meets a closed pipe
    proc = subprocess.run([str(BIN / args[0]), *args[1:], "--spool" if args[0] == "gymrec-replay" else "--installed",
                           *([str(spool)] if args[0] == "gymrec-replay" else [])],
                          cwd=tmp_path, stdout=write_fd, stderr=subprocess.PIPE, text=True, timeout=300)
    os.close(write_fd)
    assert proc.returncode == EXIT_CLOSED_PIPE, proc.stderr
    assert "BrokenPipe" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr


def test_env_kwarg_error_names_the_kwargs_once(tmp_path: Path) -> None:
    proc = run_cli("gymrec-play", "BreakoutNoFrameskip-v4", "--agent", "random", "--headless", "--env-kwarg", "nosuch=1",
                   "--spool", str(tmp_path / "s"), cwd=tmp_path)
    line = assert_one_line_error(proc, "nosuch")
    assert line.count("nosuch") == 2 and "environment creator" not in line, line  # the kwarg, and the cause's name for it


def test_hash_index_names_a_spool_episode(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    paths = sorted(record_episode(spool, "BreakoutNoFrameskip-v4", 5, seed) for seed in (1, 2))
    proc = run_cli("gymrec-replay", "#1", "--spool", str(spool), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert paths[1].stem[:8] in proc.stdout and paths[0].stem[:8] not in proc.stdout
    assert_one_line_error(run_cli("gymrec-replay", "#2", "--spool", str(spool), cwd=tmp_path), "no index 2")


def test_an_empty_keymap_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("[bindings]\n")
    with pytest.raises(KeymapError, match="binds no keys"):
        load_keymap("ale", empty)


def test_the_strip_names_the_action() -> None:
    meanings = ("NOOP", "FIRE", "RIGHT", "LEFT")
    assert status_line(4, 1.0, 3, meanings).endswith("LEFT")
    assert status_line(4, 1.0, [1, 0, 1], ("B", "A", "UP")).endswith("B+UP")
    assert status_line(4, 1.0, 3).endswith("3")  # no meanings recorded: the number


def test_author_without_players_says_so(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    record("BreakoutNoFrameskip-v4", spool, tmp_path, 5, 1)  # no --player: nobody to credit
    proc = run_cli("gymrec-export", "minari", str(spool), "gymrec/anon-v0", "--author", cwd=tmp_path,
                   env={"MINARI_DATASETS_PATH": str(tmp_path / "m")}, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "author: none (no episode names a player" in proc.stdout and "None" not in proc.stdout, proc.stdout


def test_replay_from_an_unreachable_hub_is_one_line_in_replays_words(tmp_path: Path) -> None:
    proc = run_cli("gymrec-replay", "--repo-id", "someone/gymrec-x", "#0", "--endpoint", "http://127.0.0.1:9",
                   cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    line = assert_one_line_error(proc, "cannot reach the Hub", "--local-dir")
    assert "queued" not in line
