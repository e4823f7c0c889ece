"""Bad input to gymrec-play: one line, a non-zero exit, no traceback, nothing in the spool touched."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gymrec.shared.spool.directory import partial_episodes
from gymrec.shared.spool.episode import Episode
from tests.conftest import record, run_cli


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


AGENT_MODULE = '''
def bad(obs):
    return "not an action"
'''

CASES = [
    ("unknown env", ["Breakout-v9", "--agent", "random", "--headless"], ["unknown env id", "did you mean", "Breakout-v4"]),
    ("retro without ROM", ["SuperMarioBros-Nes-v0", "--agent", "random", "--headless"], ["no ROM", "stable_retro.import"]),
    ("malformed env kwarg", ["ALE/Pong-v5", "--agent", "random", "--headless", "--env-kwarg", "frameskip"], ["KEY=VALUE"]),
    ("unknown env kwarg", ["ALE/Pong-v5", "--agent", "random", "--headless", "--env-kwarg", "bogus=1"], ["cannot make", "bogus"]),
    ("bad env kwarg value", ["ALE/Pong-v5", "--agent", "random", "--headless", "--env-kwarg", "frameskip=-3"], ["cannot make"]),
    ("unknown agent", ["ALE/Pong-v5", "--agent", "randum", "--headless"], ["MODULE:CALLABLE"]),
    ("agent module missing", ["ALE/Pong-v5", "--agent", "no_such_mod:act", "--headless"], ["cannot import"]),
    ("agent callable missing", ["ALE/Pong-v5", "--agent", "json:no_such_fn", "--headless"], ["no callable"]),
    ("agent returns garbage", ["ALE/Pong-v5", "--agent", "gymrec_test_agent:bad", "--headless"], ["does not fit"]),
    ("headless human", ["ALE/Pong-v5", "--headless"], ["needs an agent"]),
    ("missing keymap file", ["ALE/Pong-v5", "--keymap", "nope.toml"], ["does not exist"]),
]


@pytest.mark.parametrize(("case", "args", "needles"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(case: str, args: list[str], needles: list[str], spool: Path, workdir: Path) -> None:
    (workdir / "gymrec_test_agent.py").write_text(AGENT_MODULE)
    record("ALE/Pong-v5", spool, workdir, 20, 1)
    before = snapshot(spool)
    proc = run_cli("gymrec-play", *args, "--spool", str(spool), cwd=workdir, env={"PYTHONPATH": str(workdir)})
    assert_one_line_error(proc, *needles)
    after = snapshot(spool)
    assert {k: v for k, v in after.items() if k in before} == before, "an existing file was changed or deleted"
    if case == "agent returns garbage":
        # The episode had started: it is sealed as discarded (no steps), not lost or half-written.
        (new,) = {Path(k).parts[0] for k in after} - {Path(k).parts[0] for k in before}
        assert Episode(spool / new).end_reason == "discarded"


def test_spool_that_is_a_file(tmp_path: Path, workdir: Path) -> None:
    target = tmp_path / "file"
    target.write_text("keep me")
    proc = run_cli("gymrec-play", "ALE/Pong-v5", "--agent", "random", "--headless", "--spool", str(target), cwd=workdir)
    assert_one_line_error(proc, "is a file")
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere, so an unwritable spool cannot be made")
def test_unwritable_spool(tmp_path: Path, workdir: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = run_cli("gymrec-play", "ALE/Pong-v5", "--agent", "random", "--headless", "--spool", str(locked), cwd=workdir)
    assert_one_line_error(proc, "not writable")




def test_full_disk_keeps_the_episode_so_far(tiny_disk: Path, workdir: Path, tmp_path: Path) -> None:
    spool = tiny_disk / "spool"
    proc = run_cli("gymrec-play", "PongNoFrameskip-v4", "--agent", "random", "--headless", "--seed", "3",
                   "--spool", str(spool), cwd=workdir)
    assert_one_line_error(proc, "disk", "full")
    (partial,) = partial_episodes(spool)
    journal = (partial / "journal.bin").stat().st_size
    assert journal > 0
    # Free space by moving the spool to a roomy disk: the next run recovers every journaled step.
    roomy = tmp_path / "roomy"
    shutil.copytree(spool, roomy)
    from gymrec.shared.spool.recovery import recover_orphans

    (result,) = recover_orphans(roomy)
    assert result.sealed is not None, result.error
    assert Episode(result.sealed).length >= result.checked_steps > 0
