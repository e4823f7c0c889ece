"""EpisodeAttrs: one validated, typed value per episode; old and newer episodes both read."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from gymrec.shared.errors import CorruptEpisodeError, SchemaVersionError
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import REQUIRED_FIELDS, SEAL_FIELDS, EpisodeAttrs


def _raw(**changes: object) -> dict[str, object]:
    raw: dict[str, object] = {
        "schema_version": schema.SCHEMA_VERSION, "episode_id": str(uuid.uuid4()), "env_id": "ALE/Pong-v5",
        "env_kwargs": {}, "backend": "ale", "seed": 3, "action_space": {"type": "Discrete", "n": 6},
        "observation_space": {"type": "Box"}, "image_key": "frame", "fps": 15, "versions": {"gymnasium": "1.2"},
        "collector": "random", "player": "", "started_at": "2026-01-01T00:00:00Z", "chunk_steps": 64,
        "ended_at": "2026-01-01T00:01:00Z", "end_reason": "terminated", "length": 10, "episode_return": -1.0,
    }
    raw.update(changes)
    return raw


def test_fields_are_typed_and_round_trip() -> None:
    raw = _raw()
    attrs = EpisodeAttrs.from_dict(raw, "x", sealed=True)
    assert attrs.seed == 3 and attrs.fps == 15.0 and isinstance(attrs.fps, float) and attrs.sealed
    assert attrs.as_dict() == {**raw, "fps": 15.0, "env_spec_kwargs": {}, "info_skipped": []}
    assert EpisodeAttrs.from_dict(attrs.as_dict(), "x", sealed=True) == attrs


def test_an_old_episode_without_optional_fields_reads_with_defaults() -> None:
    attrs = EpisodeAttrs.from_dict(_raw(), "old", sealed=True)
    assert attrs.native_fps is None and attrs.keymap is None and attrs.info_skipped == () and attrs.recovery is None


def test_unknown_keys_are_kept_verbatim() -> None:
    attrs = EpisodeAttrs.from_dict(_raw(from_the_future="abc", genealogy={"parent": "p"}), "new", sealed=True)
    assert attrs.extra == {"from_the_future": "abc", "genealogy": {"parent": "p"}}
    assert attrs.as_dict()["genealogy"] == {"parent": "p"}


def test_updated_merges_and_validates_again() -> None:
    attrs = EpisodeAttrs.from_dict(_raw(), "x", sealed=False)
    sealed = attrs.updated({"truncated_by": "max_steps", "length": 12})
    assert sealed.truncated_by == "max_steps" and sealed.length == 12 and attrs.length == 10
    with pytest.raises(CorruptEpisodeError, match="attribute length"):
        attrs.updated({"length": "many"})


@pytest.mark.parametrize("name", [*REQUIRED_FIELDS, *SEAL_FIELDS])
def test_a_missing_required_field_is_named(name: str) -> None:
    raw = _raw()
    del raw[name]
    with pytest.raises(CorruptEpisodeError, match=name):
        EpisodeAttrs.from_dict(raw, "ep", sealed=True)


def test_seal_fields_are_needed_only_once_sealed() -> None:
    raw = {k: v for k, v in _raw().items() if k not in SEAL_FIELDS}
    assert not EpisodeAttrs.from_dict(raw, "ep", sealed=False).sealed
    with pytest.raises(CorruptEpisodeError, match="missing attribute"):
        EpisodeAttrs.from_dict(raw, "ep", sealed=True)


@pytest.mark.parametrize(("changes", "match"), [
    ({"seed": "3"}, "attribute seed"),
    ({"seed": True}, "attribute seed"),
    ({"env_kwargs": []}, "attribute env_kwargs"),
    ({"chunk_steps": 0}, "chunk_steps"),
    ({"length": -1}, "length"),
    ({"episode_id": "../../x"}, "is not this episode's UUID"),
    ({"schema_version": 99}, "schema_version 99"),
])
def test_bad_values_are_one_clear_error(changes: dict[str, object], match: str) -> None:
    error = SchemaVersionError if "schema_version" in changes else CorruptEpisodeError
    with pytest.raises(error, match=match):
        EpisodeAttrs.from_dict(_raw(**changes), "ep", sealed=True)


def test_the_id_must_match_the_directory() -> None:
    with pytest.raises(CorruptEpisodeError, match="UUID"):
        EpisodeAttrs.from_dict(_raw(), "ep", sealed=True, expected_id=str(uuid.uuid4()))
    with pytest.raises(CorruptEpisodeError, match="not a JSON object"):
        EpisodeAttrs.from_dict([1, 2], "ep", sealed=True)


def test_frozen() -> None:
    attrs = EpisodeAttrs.from_dict(_raw(), "x", sealed=True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        attrs.seed = 4  # type: ignore[misc]
