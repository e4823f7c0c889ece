"""What export needs to know about one recorded episode: a view of its typed ``EpisodeAttrs``.

Sealed episodes always have a length and an end reason; the view states that once, and adds the
key that decides which episodes can share one Minari env spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.sources import EpisodeSource
from gymrec.shared.spool.spaces import OBS_LEAF


@dataclass(frozen=True)
class EpisodeInfo:
    episode_id: str
    env_id: str
    backend: str
    env_kwargs: Mapping[str, Any]
    seed: int
    fps: float
    collector: str
    player: str
    versions: Mapping[str, str]
    image_key: str
    length: int
    end_reason: str
    observation_space: Mapping[str, Any]
    action_space: Mapping[str, Any]

    @property
    def env_key(self) -> tuple[str, str]:
        """Episodes that can share one Minari env spec have equal keys."""
        return self.env_id, repr(sorted(self.env_kwargs.items()))


def info_of(source: EpisodeSource) -> EpisodeInfo:
    attrs: EpisodeAttrs = source.attrs
    return EpisodeInfo(
        episode_id=attrs.episode_id,
        env_id=attrs.env_id,
        backend=attrs.backend,
        env_kwargs=dict(attrs.env_kwargs),
        seed=int(attrs.seed),
        fps=float(attrs.fps),
        collector=attrs.collector or "unknown",
        player=attrs.player or "",
        versions={str(k): str(v) for k, v in attrs.versions.items()},
        image_key=attrs.image_key or OBS_LEAF,
        length=int(attrs.length or 0),
        end_reason=attrs.end_reason or "",
        observation_space=dict(attrs.observation_space),
        action_space=dict(attrs.action_space),
    )
