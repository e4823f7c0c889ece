"""One episode's index row, derived from its typed attributes (``EpisodeAttrs``), and their JSON back.

The index columns that repeat an attribute (``ATTR_COLUMNS``) take their type from the
``EpisodeAttrs`` field they repeat: publishing another attribute as a column is one entry there. The
other columns say where the episode's rows are, hold its final frame, and what conversion derived
(``Derived``). This module and ``shared.spool.attrs`` are the only places that read attributes as JSON.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, NoneType, UnionType
from typing import Any

import datasets

from gymrec.shared.dataset import layout
from gymrec.shared.spool.attrs import EpisodeAttrs, JsonDict
from gymrec.shared.spool.schema import PAIRING_LAGGED
from gymrec.uploader.published import CONTENT_DIGEST_COLUMN

QUALITY_FIELDS = ("active_fraction", "inputs_per_minute", "longest_idle_s", "paused_s", "late_frames", "worst_late_ms")
LINEAGE_FIELDS = ("parent_episode_id", "branch_step", "branched_at", "takeover")
PLAN_FIELDS = ("run", "plan_index")  # a planned run's episodes (gymrec-play --ray); null otherwise
# Browser play (gymrec-serve): empty for other episodes (``participant``, the salted hash, is a column above).
STUDY_TEXT_FIELDS = ("study", "study_session", "client_browser", "client_input")
STUDY_FIGURES = ("rtt_p50_ms", "rtt_p99_ms", "display_p99_error_ms")


@dataclass(frozen=True)
class AttrColumn:
    name: str  # the index column
    field: str  # the EpisodeAttrs field it repeats
    absent: Any = None  # its value for an episode without the field (None: null)


# Human play (null for agents and older episodes), then lineage (null unless a branch, a branched
# parent or a takeover), then the plan (null unless recorded by a planned run).
ATTR_COLUMNS: tuple[AttrColumn, ...] = (
    AttrColumn("env_id", "env_id"), AttrColumn("seed", "seed"), AttrColumn("length", "length"),
    AttrColumn("return", "episode_return", 0.0), AttrColumn("end_reason", "end_reason", ""),
    AttrColumn("player", "player", ""), AttrColumn("collector", "collector", ""), AttrColumn("fps", "fps", 0.0),
    AttrColumn("versions", "versions", {}), AttrColumn("action_space", "action_space"),
    AttrColumn("observation_space", "observation_space"), AttrColumn("keymap", "keymap"),
    AttrColumn("action_meanings", "action_meanings"), AttrColumn("participant", "participant"),
    *(AttrColumn(name, name) for name in QUALITY_FIELDS + LINEAGE_FIELDS + PLAN_FIELDS),
    *(AttrColumn(name, name, "") for name in STUDY_TEXT_FIELDS), *(AttrColumn(name, name) for name in STUDY_FIGURES),
)  # fmt: skip

_HINTS = typing.get_type_hints(EpisodeAttrs)
_FEATURES: Mapping[type, Any] = MappingProxyType({
    bool: datasets.Value("bool"), int: datasets.Value("int64"), float: datasets.Value("float64"),
    str: datasets.Value("string"), dict: datasets.Value("string"),  # dicts are JSON documents
    tuple: datasets.List(datasets.Value("string")),
})  # fmt: skip


def _kind(field: str) -> type:
    hint = _HINTS[field]
    options = [a for a in typing.get_args(hint) if a is not NoneType] if isinstance(hint, UnionType) else [hint]
    return typing.get_origin(options[0]) or options[0]  # type: ignore[no-any-return]


# The index columns beside the recorded attributes' JSON: what a reader filters or shows without parsing it.
INDEX_FEATURES = datasets.Features({
    "episode_id": datasets.Value("string"),
    layout.INDEX_CONFIG_COLUMN: datasets.Value("string"),
    **{c.name: _FEATURES[_kind(c.field)] for c in ATTR_COLUMNS},
    "input_log": datasets.Value("string"),  # JSON: the raw input log of human play
    # schema.PAIRING_*: "lagged" marks human play recorded before gymrec 0.2 (action t answers observation t-1).
    "pairing": datasets.Value("string"),
    layout.INDEX_DATA_FILE_COLUMN: datasets.Value("string"),
    layout.INDEX_ROW_START_COLUMN: datasets.Value("int64"),
    layout.INDEX_ROW_COUNT_COLUMN: datasets.Value("int64"),
    layout.INDEX_FRAMES_FILE_COLUMN: datasets.Value("string"),  # format 3 (shared.dataset.frames)
    layout.INDEX_FRAMES_ROW_START_COLUMN: datasets.Value("int64"),
    layout.INDEX_FRAMES_ROW_COUNT_COLUMN: datasets.Value("int64"),
    layout.INDEX_FRAME_SHAPE_COLUMN: datasets.List(datasets.Value("int64")),
    layout.INDEX_FINAL_COLUMN: datasets.Image(),
    layout.INDEX_FINAL_HASH_COLUMN: datasets.Value("uint64"),
    layout.INDEX_FINAL_EXTRA_COLUMN: datasets.Value("string"),  # JSON
    layout.INDEX_ATTRS_COLUMN: datasets.Value("string"),  # JSON: every recorded attribute
    CONTENT_DIGEST_COLUMN: datasets.Value("string"),  # what exactly-once compares (uploader.published)
})  # fmt: skip


def to_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, allow_nan=False, default=str)


@dataclass(frozen=True)
class Derived:
    """What conversion adds to an episode's attributes; published with them in the attributes JSON."""

    env_slug: str
    observation_format: str
    observation_shape: tuple[int, ...]
    info_columns: tuple[str, ...]
    input_log: JsonDict | None = None  # human play's raw input log, columnar (the spool keeps it as arrays)

    def as_dict(self) -> JsonDict:
        out: JsonDict = {"env_slug": self.env_slug, "observation_format": self.observation_format,
                         "observation_shape": list(self.observation_shape), "info_columns": list(self.info_columns)}  # fmt: skip
        return out | ({"input_log": self.input_log} if self.input_log is not None else {})


def attributes_json(attrs: EpisodeAttrs, derived: Derived) -> str:
    """The index's attributes column: every recorded attribute, then what conversion derived."""
    return to_json(attrs.as_dict() | derived.as_dict())


def parse_attributes(text: str, where: str) -> tuple[EpisodeAttrs, Derived]:
    """An index row's attributes column back as typed values (CorruptEpisodeError naming ``where``)."""
    attrs = EpisodeAttrs.from_dict(json.loads(text), where, sealed=True)
    extra = attrs.extra
    return attrs, Derived(
        env_slug=str(extra.get("env_slug", layout.env_slug(attrs.env_id))),
        observation_format=str(extra.get("observation_format", "webp")),
        observation_shape=tuple(int(n) for n in extra.get("observation_shape", ())),
        info_columns=tuple(str(c) for c in extra.get("info_columns", ())),
        input_log=attrs.input_log,
    )


def attr_values(attrs: EpisodeAttrs, derived: Derived) -> dict[str, Any]:
    """The index row's columns that repeat an attribute, plus the input log and the pairing."""
    out: dict[str, Any] = {}
    for column in ATTR_COLUMNS:
        value = getattr(attrs, column.field)
        value = column.absent if value is None else value
        kind = _kind(column.field)
        out[column.name] = to_json(value) if kind is dict else list(value) if isinstance(value, tuple) else value
    out["input_log"] = to_json(derived.input_log) if derived.input_log is not None else None
    out["pairing"] = attrs.action_pairing
    return out


def seconds(attrs: EpisodeAttrs, length: int) -> float:
    return length / attrs.fps if attrs.fps > 0 else 0.0


def quality_totals(episodes: list[EpisodeAttrs]) -> dict[str, Any]:
    """The per-config aggregate of the quality and lineage fields that ``meta/info.json`` keeps (summable)."""
    rated = [a for a in episodes if a.active_fraction is not None]
    return {
        "rated_episodes": len(rated),
        "active_fraction_sum": round(sum(a.active_fraction or 0.0 for a in rated), 6),
        "inputs_per_minute_sum": round(sum(a.inputs_per_minute or 0.0 for a in rated), 6),
        "longest_idle_s_max": max((a.longest_idle_s or 0.0 for a in rated), default=0.0),
        "paused_s_sum": round(sum(a.paused_s or 0.0 for a in rated), 6),
        "late_frames_sum": sum(a.late_frames or 0 for a in rated),
        "worst_late_ms_max": max((a.worst_late_ms or 0.0 for a in rated), default=0.0),
        "branch_episodes": sum(1 for a in episodes if a.parent_episode_id is not None),
        "takeover_episodes": sum(1 for a in episodes if a.takeover),
        "lagged_episodes": sum(1 for a in episodes if a.action_pairing == PAIRING_LAGGED),
    }


def add_quality(total: dict[str, Any], part: dict[str, Any]) -> dict[str, Any]:
    return {key: (max if key.endswith("_max") else _add)(total.get(key, 0), value) for key, value in part.items()}


def _add(a: float, b: float) -> float:
    return round(a + b, 6) if isinstance(a, float) or isinstance(b, float) else a + b
