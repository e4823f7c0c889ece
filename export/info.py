"""What export needs to know about one recorded episode, read once from ``EpisodeSource.attrs``.

Replay's sources hand out the episode attributes; this is the one place export reads them, so a
change of their representation (a dict today, a typed ``EpisodeAttrs`` soon) is absorbed here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gymrec.replay.sources import EpisodeSource
from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spaces import OBS_LEAF


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


def _as_mapping(attrs: Any) -> Mapping[str, Any]:
    if isinstance(attrs, Mapping):
        return attrs
    as_dict = getattr(attrs, "as_dict", None)  # the typed EpisodeAttrs gives its JSON back
    if callable(as_dict):
        return dict(as_dict())
    raise CorruptEpisodeError(f"episode attributes of type {type(attrs).__name__} are not readable")


def info_of(source: EpisodeSource) -> EpisodeInfo:
    raw = _as_mapping(source.attrs)
    try:
        return EpisodeInfo(
            episode_id=str(raw["episode_id"]),
            env_id=str(raw["env_id"]),
            backend=str(raw["backend"]),
            env_kwargs=dict(raw.get("env_kwargs") or {}),
            seed=int(raw["seed"]),
            fps=float(raw.get("fps") or 30.0),
            collector=str(raw.get("collector") or "unknown"),
            player=str(raw.get("player") or ""),
            versions={str(k): str(v) for k, v in (raw.get("versions") or {}).items()},
            image_key=str(raw.get("image_key") or OBS_LEAF),
            length=int(raw["length"]),
            end_reason=str(raw.get("end_reason") or ""),
            observation_space=dict(raw["observation_space"]),
            action_space=dict(raw["action_space"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CorruptEpisodeError(f"{source.where}: attribute {e} is missing or malformed", "the episode is damaged") from e
