"""The Gymnasium ``EnvSpec`` and pinned requirements a Minari dataset carries.

``recover_environment()`` is ``gym.make(env_spec)``, so the spec must rebuild exactly the env the
episodes were recorded in: gymrec makes every env with ``render_mode="rgb_array"`` and the recorded
kwargs, and the env's own ``spec`` records both. stable-retro envs have no registered spec; one is
written by hand whose entry point is ``stable_retro:make``, which ``gym.make`` calls with the game.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from gymrec.export.info import EpisodeInfo
from gymrec.shared.envs.backends import make_env
from gymrec.shared.errors import ExportEnvError
from gymrec.shared.spool.spaces import describe_space

RETRO_ENTRY_POINT = "stable_retro:make"
# The packages an episode's frames depend on (replay checks the same ones for version drift).
PINNED = ("gymnasium", "ale-py", "vizdoom", "stable-retro")


@dataclass(frozen=True)
class EnvDescription:
    spec: EnvSpec
    observation_space: gym.Space
    action_space: gym.Space


def describe_env(info: EpisodeInfo) -> EnvDescription:
    """Make the recorded env once, check it matches the recording, and keep its spec and spaces."""
    made = make_env(info.env_id, dict(info.env_kwargs), info.backend)
    try:
        env = made.env
        for name, space, recorded in (("observation", env.observation_space, info.observation_space),
                                      ("action", env.action_space, info.action_space)):  # fmt: skip
            if describe_space(space) != dict(recorded):
                raise ExportEnvError(f"the installed {info.env_id} has another {name} space than the recording",
                                     "install the versions the episode was recorded with")
        spec = env.spec
        if spec is None and info.backend == "retro":
            spec = EnvSpec(id=info.env_id, entry_point=RETRO_ENTRY_POINT,
                           kwargs={"game": info.env_id, "render_mode": "rgb_array", **dict(info.env_kwargs)})
        if spec is None:
            raise ExportEnvError(f"{info.env_id} has no Gymnasium spec", "Minari cannot recover an env without one")
        try:
            spec.to_json()
        except (TypeError, ValueError) as e:
            raise ExportEnvError(f"the env spec of {info.env_id} is not JSON ({e})",
                                 "record with JSON-able --env-kwarg values") from e
        return EnvDescription(spec, env.observation_space, env.action_space)
    finally:
        made.env.close()


def requirements(infos: Sequence[EpisodeInfo]) -> list[str]:
    """``pkg==version`` for each frame-relevant package, as recorded; the episodes must agree."""
    pins: list[str] = []
    for name in PINNED:
        found = sorted({i.versions[name] for i in infos if name in i.versions and i.versions[name] != "not installed"})
        if len(found) > 1:
            raise ExportEnvError(f"the episodes were recorded with different {name} versions ({', '.join(found)})",
                                 "export the episodes of each version into their own dataset")
        if found:
            pins.append(f"{name}=={found[0]}")
    return pins


