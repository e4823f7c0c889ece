"""Which episodes (and steps) the training reader uses: by config, by key, and by the episode index's fields.

Fields are the index's columns (a spool episode's attributes under the same names, see
``sources.spool_fields``): ``player``, ``collector``, ``end_reason``, ``pairing``, the quality fields
(``active_fraction``, ``inputs_per_minute``, ...), lineage, and whatever a newer gymrec adds (a study
or participant field): a field no episode has is refused by name, one some episodes lack matches
none of those. Keys (ids, id prefixes, ``#N``) are resolved as ``gymrec-replay`` resolves them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gymrec.data.sources import Catalog, EpisodeEntry
from gymrec.shared.dataset import layout
from gymrec.shared.dataset.index import resolve_ids
from gymrec.shared.errors import DatasetError
from gymrec.shared.spool.schema import ACTORS


@dataclass(frozen=True)
class Select:
    """``where``: field -> a value or a list of accepted values; ``at_least``/``at_most``: numeric bounds
    (an episode without the value fails them). ``actor``: keep only windows whose every step was chosen
    by that actor (``human``, ``agent`` or ``copied``), for takeover and branch episodes."""

    config: str | None = None  # a dataset config (``ale-breakout-v5``) or an env id (``ALE/Breakout-v5``)
    episodes: tuple[str, ...] = ()  # ids, id prefixes or #N; empty: every episode
    where: Mapping[str, Any] = field(default_factory=dict)
    at_least: Mapping[str, float] = field(default_factory=dict)
    at_most: Mapping[str, float] = field(default_factory=dict)
    actor: str | None = None

    def __post_init__(self) -> None:
        if self.actor is not None and self.actor not in ACTORS:
            raise DatasetError(f"actor {self.actor!r} is not one of {', '.join(ACTORS)}", "pick one of those")
        if isinstance(self.episodes, str):
            raise DatasetError("Select(episodes=...) takes a list of keys, not one string", "wrap it in a list")

    @property
    def actor_index(self) -> int | None:
        return None if self.actor is None else ACTORS.index(self.actor)


def _accepts(wanted: Any, value: Any) -> bool:
    options = wanted if isinstance(wanted, list | tuple | set | frozenset) else (wanted,)
    return value in options


def _known(catalog: Catalog, names: set[str]) -> None:
    present = set().union(*(e.fields for e in catalog.entries)) if catalog.entries else names
    unknown = sorted(names - present)
    if unknown:
        raise DatasetError(f"no episode in {catalog.where} has the field {unknown[0]!r}",
                           f"fields are {', '.join(sorted(present))}")  # fmt: skip


def _keep(entry: EpisodeEntry, select: Select) -> bool:
    fields = entry.fields
    if select.config is not None and select.config not in (fields.get(layout.INDEX_CONFIG_COLUMN), fields.get("env_id")):
        return False
    if not all(name in fields and _accepts(wanted, fields[name]) for name, wanted in select.where.items()):
        return False
    for bounds, holds in ((select.at_least, float.__ge__), (select.at_most, float.__le__)):
        for name, bound in bounds.items():
            value = fields.get(name)
            if value is None or not holds(float(value), float(bound)):
                return False
    return True


def select_episodes(catalog: Catalog, select: Select) -> list[EpisodeEntry]:
    """The catalog's entries that ``select`` keeps, in episode id order."""
    _known(catalog, set(select.where) | set(select.at_least) | set(select.at_most))
    entries = list(catalog.entries)
    if select.episodes:
        named = {eid for key in select.episodes for eid in resolve_ids(catalog, key, False)}
        entries = [e for e in entries if e.episode_id in named]
    return [e for e in entries if _keep(e, select)]
