"""Record an episode in-process with the real writer and the product's attributes (for test set-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.session import episode_attrs
from gymrec.recorder.writer import EpisodeWriter
from gymrec.shared.attrs import EpisodeAttrs
from gymrec.shared.backends import make_env
from gymrec.shared.chunks import ArrayMeta
from gymrec.shared.spaces import encode_action, split_observation


def chunk_path(episode: Path, array: str, index: int) -> Path:
    """Where chunk ``index`` of ``array`` lies, in whichever chunk key layout the array uses."""
    return ArrayMeta.read(episode / array, episode.name, array).chunk_file(index)


def new_attrs(raw: dict[str, Any]) -> EpisodeAttrs:
    """The session's attribute dict for a new episode, validated as the session does."""
    return EpisodeAttrs.from_dict(raw, "the new episode", sealed=False)


def record_episode(spool: Path, env_id: str, steps: int, seed: int, env_kwargs: dict[str, Any] | None = None,
                   end_reason: str | None = None, collector: str = "random") -> Path:
    """One random-agent episode of at most ``steps`` steps; ``end_reason`` overrides how it is sealed."""
    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(env_id, env_kwargs or {})
    env = made.env
    try:
        env.action_space.seed(seed)
        config = PlayConfig(env_id=env_id, spool=spool, env_kwargs=made.kwargs, seed=seed, agent=collector,
                            headless=True, player="test")
        attrs = new_attrs(episode_attrs(config, made, seed, made.native_fps, None))
        writer = EpisodeWriter.create(spool, attrs, backpressure=True)
        obs, info = env.reset(seed=seed)
        reason = "truncated"
        for _ in range(steps):
            action = env.action_space.sample()
            writer.record(split_observation(obs), encode_action(attrs.action_space, action), info)
            obs, reward, terminated, truncated, info = env.step(action)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
            if terminated or truncated:
                reason = "terminated" if terminated else "truncated"
                break
        return writer.seal(split_observation(obs), end_reason or reason)
    finally:
        env.close()
