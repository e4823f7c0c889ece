"""Non-human collectors: ``random`` and ``module:callable`` (a function from observation to action)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import gymnasium as gym

from gymrec.shared.errors import BadAgentError

Agent = Callable[[Any], Any]


def random_agent(space: gym.Space, seed: int | None) -> Agent:
    # Seeded from the session seed, so a --seed run of the random agent is reproducible end to end.
    space.seed(seed)
    return lambda _obs: space.sample()


def load_agent(spec: str, space: gym.Space, seed: int | None) -> Agent:
    if spec == "random":
        return random_agent(space, seed)
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadAgentError(
            f"--agent {spec!r} is not human, random or MODULE:CALLABLE", "e.g. --agent mypkg.policies:act"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise BadAgentError(f"--agent {spec!r}: cannot import {module_name!r} ({e})", "check PYTHONPATH") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise BadAgentError(f"--agent {spec!r}: {module_name} has no callable {attr!r}", "name a function")
    return fn
