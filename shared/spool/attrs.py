"""An episode's attributes as one typed, frozen value: built and validated once, then read by field.

The attributes live in the episode group's ``zarr.json`` (spool) or its ``meta/episodes/<id>.json``
(dataset). ``EpisodeAttrs.from_dict`` is the only place that reads them as a dict: everything else
reads ``attrs.seed``, ``attrs.backend`` and so on, and ``as_dict()`` gives the JSON back for the
places that publish every attribute.

Adding an attribute is one line: a field with a default (``lineage: JsonDict | None = None``). Old
episodes lack it and read with the default; keys this gymrec does not know are kept in ``extra``
and written back unchanged, so an older gymrec neither rejects nor drops a newer one's attributes.
A field without a default is required from the episode's start; ``SEAL_FIELDS`` are required once
it is sealed.
"""

from __future__ import annotations

import dataclasses
import time
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, NoneType, UnionType
from typing import Any

from gymrec.shared.errors import CorruptEpisodeError, SchemaVersionError
from gymrec.shared.spool import schema

JsonDict = dict[str, Any]
TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_now() -> str:
    """The one timestamp format of gymrec's attributes, claims and receipts (UTC, seconds)."""
    return time.strftime(TIMESTAMP_FORMAT, time.gmtime())


@dataclass(frozen=True)
class EpisodeAttrs:
    """Every attribute gymrec knows; the dicts are JSON documents and are never mutated."""

    # Written when the episode starts: enough to re-simulate it from the journal after a crash.
    schema_version: int
    episode_id: str
    env_id: str
    env_kwargs: JsonDict
    backend: str
    seed: int
    action_space: JsonDict
    observation_space: JsonDict
    image_key: str
    fps: float
    versions: JsonDict
    collector: str
    player: str | None
    started_at: str
    chunk_steps: int
    # Optional from the start (older episodes may lack them).
    env_spec_kwargs: JsonDict = field(default_factory=dict)
    native_fps: float | None = None
    frameskip: float | None = None
    keymap: JsonDict | None = None
    host: str | None = None
    info_skipped: tuple[str, ...] = ()
    action_meanings: tuple[str, ...] | None = None  # shared.envs.backends.action_meanings, at recording
    # Added at sealing (``SEAL_FIELDS``).
    ended_at: str | None = None
    end_reason: str | None = None
    length: int | None = None
    episode_return: float | None = None
    # Why an episode ended the way it did, where that needs saying.
    truncated_by: str | None = None
    stopped_because: str | None = None
    discarded_because: str | None = None
    discarded_after: str | None = None  # how an episode ended that the player discarded on its summary
    recovery: JsonDict | None = None
    # How the episode began, where the seed alone does not say (ALE: shared.envs.ale_start).
    start_state: JsonDict | None = None
    # Human play, computed at sealing (recorder.quality, recorder.input_log); None for agents.
    active_fraction: float | None = None
    inputs_per_minute: float | None = None
    longest_idle_s: float | None = None
    paused_s: float | None = None
    late_frames: int | None = None
    worst_late_ms: float | None = None
    input_log: JsonDict | None = None
    # Rewind: a parent is sealed as branched at ``branched_at``; its branch replays the parent's first
    # ``branch_step`` actions (actor ``copied``) and plays on from there.
    branched_at: int | None = None
    parent_episode_id: str | None = None
    branch_step: int | None = None
    # The optional per-step arrays (``schema.STEP_TIMES``) this episode carries; None: all of them (older
    # episodes). Headless agents carry none: no frame is shown, and every step is the collector's.
    step_times: tuple[str, ...] | None = None
    takeover: bool | None = None  # --takeover: the agent played until the human took control (see ``actor``)
    # schema.PAIRING_*: written by gymrec >= 0.2; absent in older episodes (``action_pairing`` says what they are).
    pairing: str | None = None
    # A study participant's salted hash (hex; None outside studies): what a withdrawal names (shared.spool.withdrawals).
    participant: str | None = None
    # A planned run (``gymrec-play --ray``): its name and this episode's index in its plan. The id and
    # seed are a pure function of (run seed, run, plan_index); recovery never publishes such a partial.
    run: str | None = None
    plan_index: int | None = None
    # Browser play (gymrec-serve, docs/browser.md); None for every other episode. ``participant`` above is
    # the salted hash of the id the study platform gave (shared.study.participants), never the id itself.
    study: str | None = None
    study_session: str | None = None
    client_browser: str | None = None  # the browser's family and major version ("chrome 120"), nothing finer
    client_input: str | None = None  # what the participant played with: keyboard, gamepad or keyboard+gamepad
    rtt_p50_ms: float | None = None  # network round trip, server -> browser -> server, per step
    rtt_p99_ms: float | None = None
    display_p99_error_ms: float | None = None  # p99 |browser frame interval - period|
    # Per step, in microseconds: the round trip and the browser's display and decision times (from
    # the episode's first frame on screen, on the browser's own clock). Kept beside shown_ns/decided_ns.
    browser_timing: JsonDict | None = None
    # Keys this gymrec does not know (a newer writer's, or a dataset's meta fields): kept verbatim.
    extra: JsonDict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: object, where: str, sealed: bool, expected_id: str | None = None) -> EpisodeAttrs:
        """Validate ``data`` against this schema: CorruptEpisodeError / SchemaVersionError naming ``where``."""
        if not isinstance(data, dict):
            raise CorruptEpisodeError(f"{where}: the attributes are not a JSON object", "the episode is damaged")
        version = data.get("schema_version")
        if version is None:
            raise CorruptEpisodeError(f"{where}: not a gymrec episode (no schema_version attribute)")
        if version not in schema.READABLE_SCHEMA_VERSIONS:
            raise SchemaVersionError(
                f"{where}: schema_version {version!r} is not supported (this gymrec reads "
                f"{', '.join(map(str, schema.READABLE_SCHEMA_VERSIONS))})",
                "upgrade gymrec, or use the gymrec version that recorded it",
            )
        needed = REQUIRED_FIELDS + (SEAL_FIELDS if sealed else ())
        # A required field typed ``X | None`` (player) must be present but may be null.
        missing = [name for name in needed
                   if data.get(name) is None and not (name in data and name in REQUIRED_FIELDS and _optional(name))]
        if missing:
            raise CorruptEpisodeError(f"{where}: missing attribute(s) {', '.join(missing)}", "the episode is damaged")
        known = {name: _coerce(where, name, data[name]) for name in _FIELD_NAMES if name in data}
        extra = {key: value for key, value in data.items() if key not in _FIELD_NAMES}
        attrs = cls(**known, extra=extra)
        # The id names files in datasets and repos: it must be the UUID the directory is named after,
        # never a path ("../../x") smuggled in through a damaged or hostile zarr.json.
        if not (schema.is_uuid(attrs.episode_id) and expected_id in (None, attrs.episode_id)):
            raise CorruptEpisodeError(f"{where}: episode_id {attrs.episode_id!r} is not this episode's UUID",
                                      "the episode is damaged")
        if attrs.chunk_steps <= 0:
            raise CorruptEpisodeError(f"{where}: chunk_steps {attrs.chunk_steps} is not positive", "the episode is damaged")
        if attrs.length is not None and attrs.length < 0:
            raise CorruptEpisodeError(f"{where}: length {attrs.length} is negative", "the episode is damaged")
        return attrs

    def as_dict(self) -> JsonDict:
        """The JSON attributes: every field that has a value, then the unknown keys as they came."""
        out: JsonDict = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out | self.extra

    def to_json(self) -> JsonDict:
        return self.as_dict()

    def updated(self, changes: JsonDict, where: str = "") -> EpisodeAttrs:
        """These attributes with ``changes`` merged in (sealing, recovery notes), validated again."""
        merged = self.as_dict() | changes
        return EpisodeAttrs.from_dict(merged, where or self.episode_id, sealed="length" in merged,
                                      expected_id=self.episode_id)

    @property
    def sealed(self) -> bool:
        return self.length is not None

    @property
    def action_pairing(self) -> str:
        """``pairing``, or for an episode recorded before it existed: lagged if a person played any step
        (before 0.2 a human action was the input gathered over the previous frame; agents always
        answered the observation they were given)."""
        if self.pairing is not None:
            return self.pairing
        person = self.collector == "human" or bool(self.takeover)
        return schema.PAIRING_LAGGED if person else schema.PAIRING_ON_SCREEN


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(EpisodeAttrs)) - {"extra"}
REQUIRED_FIELDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(EpisodeAttrs)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
SEAL_FIELDS: tuple[str, ...] = ("ended_at", "end_reason", "length", "episode_return")


# Resolved once: ``from __future__ import annotations`` leaves the field types as strings.
_HINTS: Mapping[str, Any] = MappingProxyType(typing.get_type_hints(EpisodeAttrs))


def _optional(name: str) -> bool:
    hint = _HINTS[name]
    return isinstance(hint, UnionType) and NoneType in typing.get_args(hint)


def _coerce(where: str, name: str, value: object) -> Any:
    """``value`` as field ``name``'s declared type, or a CorruptEpisodeError naming both."""
    hint = _HINTS[name]
    options = typing.get_args(hint) if isinstance(hint, UnionType) else (hint,)
    for option in options:
        ok, converted = _as_type(option, value)
        if ok:
            return converted
    raise CorruptEpisodeError(f"{where}: attribute {name} is {value!r}, which is not a {hint}", "the episode is damaged")


def _as_type(hint: Any, value: object) -> tuple[bool, Any]:
    origin = typing.get_origin(hint) or hint
    if hint is NoneType:
        return value is None, None
    if hint is Any:
        return True, value
    if isinstance(value, bool):  # bool is an int in Python, never in these attributes
        return origin is bool, value
    if origin is int:
        return isinstance(value, int), value
    if origin is float:
        # JSON keeps 60.0 as 60. Non-finite values are the CLI's to refuse: an old episode still reads.
        return isinstance(value, int | float), float(value) if isinstance(value, int | float) else 0.0
    if origin is str:
        return isinstance(value, str), value
    if origin is dict:
        return isinstance(value, dict), value
    if origin is tuple:
        return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value), tuple(value) if isinstance(value, list | tuple) else ()
    return False, None
