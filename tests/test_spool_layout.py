"""A sealed episode is a plain Zarr hierarchy: checksums in its attributes, the input log as arrays,
nothing else in its directories; episodes sealed by the previous layout still read; recovery tidies
what a crash left behind (sealing's leftovers, interrupted creations) and deletes nothing else."""

from __future__ import annotations

import os
import shutil
import time
import uuid
import warnings
from pathlib import Path

import pytest
import zarr

from gymrec.shared.errors import ChunkCorruptError, CorruptEpisodeError
from gymrec.shared.spool import schema, zarr_layout
from gymrec.shared.spool.directory import SET_ASIDE_AREA, write_owners
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import STAGING_GRACE, recover_orphans
from gymrec.shared.spool.writer import EpisodeWriter
from tests.conftest import run_cli
from tests.recording import chunk_path, new_attrs, record_episode
from tests.spool_versions import as_previous_version, attributes, write_attributes

ENV = "BreakoutNoFrameskip-v4"
# ~10 events a second, as a player pressing and releasing arrow keys and space does.
EVENTS = {"origin_ns": 5_000, "kinds": ["key_down", "key_up", "button_down", "button_up", "axis"],
          "t_ns": [100 * i + 7 for i in range(300)], "kind": [i % 2 for i in range(300)],
          "code": [[32, 1073741904, 1073741903][i % 3] for i in range(300)], "value": [0] * 300}  # fmt: skip


@pytest.fixture(scope="module")
def human(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sealed 70-step episode carrying an input log (written through the real writer)."""
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.session import episode_attrs
    from gymrec.shared.envs.backends import make_env
    from gymrec.shared.spool.spaces import encode_action, split_observation

    spool = tmp_path_factory.mktemp("layout") / "spool"
    spool.mkdir()
    made = make_env(ENV, {})
    try:
        config = PlayConfig(env_id=ENV, spool=spool, env_kwargs=made.kwargs, seed=1, agent="human", headless=False, player="p")
        attrs = new_attrs(episode_attrs(config, made, 1, made.native_fps, None))
        writer = EpisodeWriter.create(spool, attrs, backpressure=True)
        obs, info = made.env.reset(seed=1)
        for t in range(70):
            writer.record(split_observation(obs), encode_action(attrs.action_space, t % 4), info, (t, t + 1))
            obs, reward, terminated, truncated, info = made.env.step(t % 4)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
        return writer.seal(split_observation(obs), "truncated", {"input_log": EVENTS})
    finally:
        made.env.close()


def _copy(episode: Path, spool: Path) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copytree(episode, spool / episode.name))


def _list_with_plain_zarr(episode: Path) -> list[str]:
    group = zarr.open_group(str(episode), mode="r")
    return sorted(name for name, _ in group.members(max_depth=None))


def test_a_sealed_episode_is_a_plain_zarr_hierarchy_that_zarr_lists_without_warnings(human: Path) -> None:
    assert sorted(p.name for p in human.iterdir() if p.is_file()) == [schema.METADATA_NAME]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # zarr 3.1 warns about every non-Zarr entry in a group
        members = _list_with_plain_zarr(human)
        assert "reward" in list(zarr.open_group(str(human), mode="r").array_keys())
    assert {"obs/frame", "input/t_ns", "input/code", "reward"} <= set(members)


def test_the_input_log_is_stored_as_arrays_and_reads_back_whole(human: Path) -> None:
    stored = attributes(human)["input_log"]
    assert stored == {"origin_ns": 5_000, "kinds": EVENTS["kinds"], "events": 300}, "no event left in the JSON"
    episode = Episode(human)
    assert episode.input_log() == EVENTS
    plain = zarr.open_group(str(human), mode="r")
    assert plain[schema.input_path("t_ns")][:].tolist() == EVENTS["t_ns"]  # plain zarr reads it, checksum and all
    chunk = chunk_path(human, schema.input_path("code"), 0)
    damaged = _copy(human, human.parent.parent / "damaged")
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 0x01
    chunk_path(damaged, schema.input_path("code"), 0).write_bytes(bytes(data))
    with pytest.raises(ChunkCorruptError, match="input/code"):
        Episode(damaged).input_log()
    with pytest.raises(ChunkCorruptError, match="input/code"):
        Episode(damaged).verify_checksums()


def test_the_attributes_and_every_arrays_metadata_are_checksummed(human: Path, tmp_path: Path) -> None:
    edited = _copy(human, tmp_path / "a")
    attrs = attributes(edited)
    write_attributes(edited, {**attrs, "seed": attrs["seed"] + 1}, sign_them=False)  # valid, but not what was sealed
    with pytest.raises(CorruptEpisodeError, match="attributes fail their crc32c"):
        Episode(edited)
    write_attributes(edited, {**attrs, "seed": attrs["seed"] + 1})  # a tool editing them on purpose re-signs
    assert Episode(edited).attrs.seed == attrs["seed"] + 1
    reshaped = _copy(human, tmp_path / "b")
    meta = reshaped / "reward" / schema.METADATA_NAME
    meta.write_text(meta.read_text().replace('"fill_value":0.0', '"fill_value":1.0'))
    with pytest.raises(CorruptEpisodeError, match="reward/zarr.json fails its crc32c"):
        Episode(reshaped)


def test_episodes_sealed_by_the_previous_layout_still_read_and_upload_their_input_log(human: Path, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    old = _copy(human, spool)
    as_previous_version(old)
    assert {schema.CHECKSUMS_NAME, schema.COMMITTED_NAME, schema.LOCK_NAME} <= {p.name for p in old.iterdir()}
    episode = Episode(old)
    assert episode.input_log() == EVENTS and episode.length == 70
    episode.verify_checksums()
    # Its checksums.json still guards the array metadata.
    meta = old / "reward" / schema.METADATA_NAME
    saved = meta.read_text()
    meta.write_text(saved.replace('"fill_value":0.0', '"fill_value":1.0'))
    with pytest.raises(CorruptEpisodeError, match="reward/zarr.json fails its crc32c"):
        Episode(old)
    meta.write_text(saved)
    # The recovery scan removes the lock and marker nobody reads; checksums.json is data: it stays.
    recover_orphans(spool)
    assert sorted(p.name for p in old.iterdir() if p.is_file()) == [schema.CHECKSUMS_NAME, schema.METADATA_NAME]
    assert Episode(old).input_log() == EVENTS
    replayed = run_cli("gymrec-replay", str(old), "--check-frames", cwd=tmp_path)
    assert replayed.returncode == 0 and "identical" in replayed.stdout, replayed.stderr
    # Renamed back to .partial by hand, it is re-sealed in today's layout, its input log kept.
    partial = old.rename(spool / schema.partial_name(old.name.split(".")[0]))
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and result.checked_steps == 70
    assert sorted(p.name for p in result.sealed.iterdir() if p.is_file()) == [schema.METADATA_NAME]
    assert Episode(result.sealed).input_log() == EVENTS and not partial.exists()


def test_a_crash_between_sealings_rename_and_its_unlinks_leaves_nothing_behind(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    sealed = record_episode(spool, ENV, 40, 2)
    for name in schema.WRITING_FILES:  # what the sealed directory held right after the rename
        (sealed / name).write_bytes(b"left by the writer")
    assert Episode(sealed).length == 40, "harmless: readers never look at them"
    assert recover_orphans(spool) == []
    assert sorted(p.name for p in sealed.iterdir() if p.is_file()) == [schema.METADATA_NAME]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _list_with_plain_zarr(sealed)


def test_a_crash_between_dropping_the_marker_and_the_rename_loses_nothing(human: Path, tmp_path: Path) -> None:
    """Sealing's last durable state before the rename: final metadata, no committed.json, a .partial."""
    spool = tmp_path / "spool"
    partial = _copy(human, spool).rename(spool / schema.partial_name(human.name.split(".")[0]))
    (partial / schema.LOCK_NAME).touch()
    (result,) = recover_orphans(spool)
    assert result.sealed is not None and (result.checked_steps, result.rebuilt_steps) == (70, 0)
    episode = Episode(result.sealed)
    assert episode.length == 70 and episode.input_log() == EVENTS, "the input log's arrays are kept and re-signed"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _list_with_plain_zarr(result.sealed)


def _staging(spool: Path, age: float, extra: str | None = None, owner: int | None = None) -> Path:
    """A ``.<id>.partial.creating`` as ``EpisodeWriter.create`` leaves it when killed, ``age`` seconds old."""
    staging = spool / f".{schema.partial_name(str(uuid.uuid4()))}{schema.STAGING_SUFFIX}"
    zarr_layout.write_group(staging, {"schema_version": schema.SCHEMA_VERSION})
    for sub in (schema.OBS_GROUP, schema.HASH_GROUP):
        zarr_layout.write_group(staging / sub, {})
    if owner is not None:
        write_owners(staging, [owner])
    if extra is not None:
        (staging / extra).write_bytes(b"not written by creation")
    then = time.time() - age
    os.utime(staging, (then, then))
    return staging


def test_interrupted_creations_are_removed_or_set_aside_never_left_to_pile_up(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    dead = _staging(spool, STAGING_GRACE * 2)  # killed before it took its lock: no writer.lock at all
    odd = _staging(spool, STAGING_GRACE * 2, extra="notes.txt")
    young = _staging(spool, 0)  # a live recorder may be creating it right now
    owned = _staging(spool, STAGING_GRACE * 2, owner=os.getpid())  # its creator still exists
    recover_orphans(spool)
    assert not dead.exists(), "metadata only, creator gone: provably garbage"
    assert not odd.exists() and (spool / SET_ASIDE_AREA / odd.name / "notes.txt").read_bytes() == b"not written by creation"
    assert "notes.txt" in (spool / SET_ASIDE_AREA / (odd.name + ".reason.txt")).read_text()
    assert (young / schema.OBS_GROUP).is_dir() and (owned / schema.OBS_GROUP).is_dir(), "left whole"
