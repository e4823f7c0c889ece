"""gymrec-play end to end: headless agents produce sealed, readable, complete episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from gymrec.shared.spool import schema
from gymrec.shared.spool.episode import Episode
from tests.conftest import record, run_cli
from tests.recording import chunk_path

ENVS = [
    ("BreakoutNoFrameskip-v4", "ale", {"frame": (210, 160, 3)}),
    ("ALE/Pong-v5", "ale", {"frame": (210, 160, 3)}),
    ("VizdoomBasic-v1", "vizdoom", {"screen": (240, 320, 3), "gamevariables": (1,)}),
    ("VizdoomDeathmatch-v1", "vizdoom", {"screen": (240, 320, 3), "gamevariables": (5,)}),
    ("Airstriker-Genesis-v0", "retro", {"frame": (224, 320, 3)}),
]


@pytest.mark.parametrize(("env_id", "backend", "obs_shapes"), ENVS, ids=[e[0] for e in ENVS])
def test_headless_agent_records_a_sealed_episode(env_id: str, backend: str, obs_shapes: dict, spool: Path,
                                                 workdir: Path) -> None:
    (path,) = record(env_id, spool, workdir, 150, 7)
    assert path.parent == spool and path.suffix == ".zarr"
    assert not list(spool.glob("*.partial")), "a sealed run leaves no partial behind"
    episode = Episode(path)
    attrs = episode.attrs
    assert attrs.env_id == env_id and attrs.backend == backend and attrs.seed == 7
    assert attrs.collector == "random" and attrs.schema_version == schema.SCHEMA_VERSION
    assert {"gymnasium", "gymrec"} <= set(attrs.versions)
    assert 0 < episode.length <= 150
    assert attrs.end_reason in ("terminated", "truncated")
    if attrs.end_reason == "truncated":
        assert episode.length == 150 and attrs.truncated_by == "max_steps"
    assert {leaf.name: leaf.shape for leaf in episode.obs_leaves} == obs_shapes
    first = episode.batch(0, 64)
    for name, shape in obs_shapes.items():
        assert first.obs[name].shape == (min(64, episode.length), *shape)
    assert np.isclose(first.reward.sum() + (episode.batch(64, episode.length).reward.sum() if episode.length > 64 else 0),
                      attrs.episode_return)
    assert len(episode.actions()) == episode.length
    timestamps = episode.batch(0, episode.length, with_obs=False).timestamp
    assert np.all(np.diff(timestamps) >= 0) and timestamps[0] > 1.7e9


def test_random_agent_with_a_seed_is_reproducible(spool: Path, workdir: Path) -> None:
    (a,) = record("ALE/Pong-v5", spool, workdir, 100, 11)
    (b,) = record("ALE/Pong-v5", spool, workdir, 100, 11)
    ea, eb = Episode(a), Episode(b)
    assert ea.id != eb.id
    assert ea.actions() == eb.actions()
    assert np.array_equal(ea.hashes("frame", 0, 101), eb.hashes("frame", 0, 101))


def test_episodes_reset_with_fresh_recorded_seeds(spool: Path, workdir: Path) -> None:
    paths = record("VizdoomBasic-v1", spool, workdir, 30, 5, "--episodes", "3")
    seeds = [Episode(p).attrs.seed for p in paths]
    assert len(paths) == 3 and seeds[0] == 5 and len(set(seeds)) == 3


def test_frames_match_a_fresh_simulation_bit_for_bit(spool: Path, workdir: Path) -> None:
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    (path,) = record("BreakoutNoFrameskip-v4", spool, workdir, 130, 3)
    episode = Episode(path)
    env = gym.make("BreakoutNoFrameskip-v4")
    obs, _ = env.reset(seed=3)
    frames = episode.obs("frame", 0, episode.length + 1)
    for t, action in enumerate(episode.actions()):
        assert np.array_equal(frames[t], obs), f"step {t}"
        assert int(episode.hashes("frame", t, t + 1)[0]) == schema.row_hash(obs)
        obs, *_ = env.step(action)
    assert np.array_equal(frames[-1], obs)


def test_zarr_itself_reads_the_directly_written_chunks(spool: Path, workdir: Path) -> None:
    (path,) = record("ALE/Pong-v5", spool, workdir, 70, 2)
    group = zarr.open_group(str(path), mode="r")
    frames = group["obs/frame"]
    assert isinstance(frames, zarr.Array)
    assert frames.shape == (71, 210, 160, 3) and frames.chunks == (64, 210, 160, 3)
    assert frames[:].any() and group["action/value"].shape == (70,)


@pytest.mark.parametrize("dtype", ["|b1", "|i1", "<i2", "<i4", "<i8", "|u1", "<u2", "<u4", "<u8", "<f2", "<f4", "<f8"])
def test_metadata_written_without_zarr_is_what_zarr_writes(dtype: str) -> None:
    """The recorder spells out group and numeric-array metadata itself (importing zarr cost start-up)."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.group import GroupMetadata

    from gymrec.shared.spool import zarr_layout

    for shape in [(), (3,), (210, 160, 3)]:
        for length in (0, 65):
            ours = zarr_layout.array_json(length, shape, np.dtype(dtype), 64)
            theirs = zarr_layout.zarr_array_template(shape, dtype, 64).replace('"shape":[0', f'"shape":[{length}', 1)
            assert ours.decode() == theirs
    attributes = {"seed": 3, "name": "é", "nested": {"x": [1.5, None, True]}}
    by_zarr = GroupMetadata(attributes=attributes).to_buffer_dict(default_buffer_prototype())[schema.METADATA_NAME]
    assert zarr_layout.group_json(attributes) == zarr_layout._compact(by_zarr.to_bytes())


def test_list_shows_backend_and_rom_status(workdir: Path) -> None:
    proc = run_cli("gymrec-play", "--list", "Airstriker", cwd=workdir)
    assert proc.returncode == 0
    assert "Airstriker-Genesis-v0" in proc.stdout and "retro" in proc.stdout and "ready" in proc.stdout
    proc = run_cli("gymrec-play", "--list", "SuperMarioBros-Nes", cwd=workdir)
    assert "no ROM" in proc.stdout and proc.stderr.count("stable_retro.import") == 1  # the hint once, at the end


def test_a_missing_chunk_is_corrupt_not_blank_frames(spool: Path, workdir: Path) -> None:
    """zarr would read a deleted chunk as zeros; every reader (uploader, replay) must refuse instead."""
    from gymrec.shared.errors import CorruptEpisodeError

    (path,) = record("ALE/Pong-v5", spool, workdir, 200, 1)
    chunk_path(path, "obs/frame", 1).unlink()
    with pytest.raises(CorruptEpisodeError, match=r"chunk 1 of 'obs/frame' \(steps 64..127\) is missing"):
        Episode(path)
