"""gymrec-replay: record with the real recorder, replay, and prove identical or find the first divergence."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import numpy as np
import pytest

from gymrec.replay.verify import VerifyOptions, verify
from gymrec.shared.envs.backends import make_env_for
from gymrec.shared.errors import ChunkCorruptError
from gymrec.shared.spool.schema import row_hash
from gymrec.shared.spool.sources import SpoolSource
from tests.recording import chunk_path
from tests.replay_helpers import (
    BIN,
    copy_episode,
    edit_attributes,
    read_row,
    record_episode,
    replay_cli,
    rewrite_rows,
    tree_digest,
)


def play(spool: Path, env_id: str, steps: int, seed: int, cwd: Path | None = None) -> Path:
    """Record one random-agent episode with the recorder CLI; returns the sealed episode."""
    out = subprocess.run(
        [str(BIN / "gymrec-play"), env_id, "--agent", "random", "--headless", "--episodes", "1",
         "--max-steps", str(steps), "--seed", str(seed), "--spool", str(spool)],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return Path(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def breakout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return play(tmp_path_factory.mktemp("spool"), "BreakoutNoFrameskip-v4", 200, 7)


def options(tmp_path: Path) -> VerifyOptions:
    return VerifyOptions(diff_dir=tmp_path / "diffs")


@pytest.mark.parametrize("env_id", ["BreakoutNoFrameskip-v4", "ALE/Pong-v5", "VizdoomBasic-v1"])
def test_record_then_replay_is_identical(env_id: str, tmp_path: Path) -> None:
    episode = play(tmp_path / "spool", env_id, 150, 3, cwd=tmp_path)
    before = tree_digest(tmp_path / "spool")
    out = replay_cli(["--spool", str(tmp_path / "spool"), episode.stem[:8]], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical" in out.stdout and episode.stem[:8] in out.stdout
    assert tree_digest(tmp_path / "spool") == before


def test_retro_record_then_replay_is_identical(tmp_path: Path) -> None:
    episode = play(tmp_path / "spool", "Airstriker-Genesis-v0", 120, 5, cwd=tmp_path)
    out = replay_cli([str(episode)], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "identical" in out.stdout


def test_sticky_actions_need_the_seed(tmp_path: Path) -> None:
    """Pong v5 replays only because the seed is honoured: another seed diverges."""
    episode = record_episode(tmp_path / "spool", "ALE/Pong-v5", 300, 11)
    source = SpoolSource(episode)
    assert verify(source, options(tmp_path)).status == "identical"
    source.attrs = dataclasses.replace(source.attrs, seed=12)
    result = verify(source, options(tmp_path))
    assert result.status == "diverged" and result.divergence is not None


def test_tampered_reward_is_found_at_its_step(breakout: Path, tmp_path: Path) -> None:
    copy = copy_episode(breakout, tmp_path / "spool")
    rewrite_rows(copy, "reward", 57, float(read_row(copy, "reward", 57)) + 1.0)
    result = verify(SpoolSource(copy), options(tmp_path))
    assert result.status == "diverged" and result.divergence is not None
    assert (result.divergence.step, result.divergence.field) == (57, "reward")
    out = replay_cli([str(copy)])
    assert out.returncode == 1 and "step 57 reward" in out.stdout


def _first_effect(episode: Path, step: int, new_action: int) -> int:
    """Independently of replay: the first observation that differs when action ``step`` changes."""
    source = SpoolSource(episode)
    steps = source.steps()
    made = make_env_for(source.attrs)
    try:
        obs, _ = made.env.reset(seed=source.attrs.seed)
        actions = list(steps.actions)
        actions[step] = new_action
        for t, action in enumerate(actions):
            if row_hash(obs) != steps.obs_hashes["frame"][t]:
                return t
            obs, *_ = made.env.step(action)
        return len(actions) if row_hash(obs) != steps.obs_hashes["frame"][-1] else -1
    finally:
        made.env.close()


def test_tampered_action_is_found_at_its_first_effect(breakout: Path, tmp_path: Path) -> None:
    copy = copy_episode(breakout, tmp_path / "spool")
    step = 40
    new_action = 3 if int(read_row(copy, "action/value", step)) != 3 else 2  # LEFT (or RIGHT) moves the paddle
    rewrite_rows(copy, "action/value", step, new_action)
    expected = _first_effect(breakout, step, new_action)
    assert expected > step
    result = verify(SpoolSource(copy), options(tmp_path))
    assert result.divergence is not None
    assert (result.divergence.step, result.divergence.field) == (expected, "observation")
    assert result.divergence.differing and result.divergence.diff_png is not None
    assert result.divergence.diff_png.is_file()


def test_tampered_frame_and_hash_is_a_wrong_recording(breakout: Path, tmp_path: Path) -> None:
    copy = copy_episode(breakout, tmp_path / "spool")
    frame = read_row(copy, "obs/frame", 90)
    frame[100, 80, 1] ^= 0x10
    rewrite_rows(copy, "obs/frame", 90, frame)
    rewrite_rows(copy, "hash/frame", 90, np.uint64(row_hash(frame)))
    result = verify(SpoolSource(copy), options(tmp_path))
    d = result.divergence
    assert d is not None and (d.step, d.field) == (90, "observation")
    assert (d.differing, d.max_abs) == (1, 16.0)
    assert d.diff_png is not None and d.diff_png.name.endswith("step90-frame.png")


def test_tampered_pixel_alone_is_found_by_check_frames(breakout: Path, tmp_path: Path) -> None:
    """Only the stored frame changes: its hash still matches the replay, so the hash-first pass cannot
    see it; --check-frames proves each stored frame against its hash and reports the step."""
    copy = copy_episode(breakout, tmp_path / "spool")
    frame = read_row(copy, "obs/frame", 123)
    frame[5, 5, 0] ^= 0xFF
    rewrite_rows(copy, "obs/frame", 123, frame)
    assert verify(SpoolSource(copy), options(tmp_path)).status == "identical"
    result = verify(SpoolSource(copy), VerifyOptions(diff_dir=tmp_path / "d", check_frames=True))
    d = result.divergence
    assert d is not None and (d.step, d.field) == (123, "observation")
    assert d.differing == 1 and "does not match its recorded hash" in d.detail
    out = replay_cli([str(copy), "--check-frames", "--diff-dir", str(tmp_path / "d2")])
    assert out.returncode == 1 and "step 123 observation" in out.stdout
    assert list((tmp_path / "d2").glob("*.png"))


def test_all_skips_discarded_unless_named(breakout: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    copy_episode(breakout, spool)
    discarded = record_episode(spool, "BreakoutNoFrameskip-v4", 30, 1, end_reason="discarded")
    out = replay_cli(["--spool", str(spool), "--all"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("identical") == 1 and discarded.stem[:8] not in out.stdout
    named = replay_cli(["--spool", str(spool), discarded.stem])
    assert named.returncode == 0 and discarded.stem[:8] in named.stdout


def _one_error_line(out: subprocess.CompletedProcess[str], needle: str, code: int = 2) -> None:
    assert out.returncode == code, out.stdout + out.stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("gymrec-replay")]
    assert len(lines) == 1 and needle in lines[0], out.stderr
    assert "Traceback" not in out.stderr


def test_bad_input_exits_2_and_changes_nothing(breakout: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    copy_episode(breakout, spool, "abcd0000-0000-4000-8000-000000000001")
    copy_episode(breakout, spool, "abcd0000-0000-4000-8000-000000000002")
    before = tree_digest(spool)
    _one_error_line(replay_cli(["--spool", str(spool), "0123abcd"]), "no episode")
    _one_error_line(replay_cli(["--spool", str(spool), "abcd"]), "matches 2 episodes")
    _one_error_line(replay_cli(["--spool", str(tmp_path / "nope"), "abc"]), "does not exist")
    assert tree_digest(spool) == before


def test_missing_rom_exits_2_and_corrupt_chunks_exit_4(breakout: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    rom = copy_episode(breakout, spool)
    edit_attributes(rom, ("BreakoutNoFrameskip-v4", "SonicTheHedgehog-Genesis-v0"), ('"ale"', '"retro"'))
    corrupt = copy_episode(breakout, spool)
    chunk_path(corrupt, "reward", 1).write_bytes(b"garbage, not zstd")
    truncated = copy_episode(breakout, spool)
    chunk_path(truncated, "hash/frame", 2).unlink()
    before = tree_digest(spool)
    _one_error_line(replay_cli([str(rom)]), "no ROM is installed")
    _one_error_line(replay_cli([str(corrupt)]), "fails its crc32c checksum", ChunkCorruptError.exit_code)
    _one_error_line(replay_cli([str(truncated)]), "missing", ChunkCorruptError.exit_code)
    out = replay_cli(["--spool", str(spool), "--all"])
    # --all: corruption wins the exit status (5); the missing ROM is an error, the two damaged ones corrupt
    assert out.returncode == ChunkCorruptError.exit_code, out.stderr
    assert out.stdout.count("error") == 1 and out.stdout.count("corrupt") >= 2, out.stdout
    assert tree_digest(spool) == before


def test_version_mismatch_is_warned(breakout: Path, tmp_path: Path) -> None:
    copy = copy_episode(breakout, tmp_path / "spool")
    edit_attributes(copy, ('"ale-py": "', '"ale-py": "0.0.1-was-'))
    out = replay_cli([str(copy)])
    assert out.returncode == 0
    assert "warning" in out.stderr and "ale-py" in out.stderr and "ale-py" in out.stdout



@pytest.mark.parametrize(("array", "row", "field"), [("terminated", 30, "terminated"), ("truncated", 199, "truncated"),
                                                     ("hash/frame", 200, "final observation")])
def test_tampered_flag_or_final_hash_is_named(breakout: Path, tmp_path: Path, array: str, row: int, field: str) -> None:
    """Every compared field is caught at its step, the last step and the final observation included."""
    copy = copy_episode(breakout, tmp_path / "spool")
    value = read_row(copy, array, row)
    rewrite_rows(copy, array, row, np.uint64(int(value) ^ 1) if array.startswith("hash") else np.bool_(not value))
    d = verify(SpoolSource(copy), options(tmp_path)).divergence
    assert d is not None and (d.step, d.field) == (row, field), d
