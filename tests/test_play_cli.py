"""gymrec-play's command line as a new user meets it: --list, suggestions for unknown ids."""

from __future__ import annotations

from pathlib import Path

from gymrec.shared.envs.backends import suggestions
from tests.conftest import run_cli
from tests.test_recorder_errors import assert_one_line_error


def test_list_is_one_line_per_id_with_the_hint_once(workdir: Path) -> None:
    proc = run_cli("gymrec-play", "--list", cwd=workdir)
    assert proc.returncode == 0
    rows = proc.stdout.splitlines()
    assert len(rows) > 1000 and all(len(row.split()) == 3 or row.endswith("no ROM") for row in rows)
    assert {row.rsplit("  ", 1)[-1].strip() for row in rows} == {"ready", "no ROM"}
    assert max(len(row) for row in rows) < 80  # no 195-character hint repeated on every row
    assert proc.stderr.count("stable_retro.import") == 1 and len(proc.stderr.splitlines()) <= 5


def test_list_installed_shows_only_playable_ids(workdir: Path) -> None:
    proc = run_cli("gymrec-play", "--list", "--installed", cwd=workdir)
    assert proc.returncode == 0
    rows = proc.stdout.splitlines()
    assert rows and all(row.endswith("ready") for row in rows)
    assert any(row.startswith("Airstriker-Genesis-v0") for row in rows)
    assert not any(row.startswith("SuperMarioBros-Nes-v0") for row in rows)
    assert "need a ROM" in proc.stderr


def test_list_with_no_match_says_so_and_suggests(workdir: Path) -> None:
    assert_one_line_error(run_cli("gymrec-play", "--list", "zzz", cwd=workdir), "no env id matches 'zzz'")
    assert_one_line_error(run_cli("gymrec-play", "--list", "breakot", cwd=workdir), "did you mean ALE/Breakout-v5")


def test_unknown_ids_suggest_the_current_version_first() -> None:
    known = ["Breakout-v0", "Breakout-v4", "BreakoutNoFrameskip-v4", "ALE/Breakout-v5", "ALE/Pong-v5", "Pong-v0"]
    assert suggestions("breakout", known) == ["ALE/Breakout-v5", "Breakout-v4", "Breakout-v0"]
    assert suggestions("Breakout-v9", known)[0] == "ALE/Breakout-v5"
    assert suggestions("pong", known) == ["ALE/Pong-v5", "Pong-v0"]
    assert suggestions("zzz", known) == []
