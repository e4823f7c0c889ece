"""Gymnasium spaces as JSON, and actions/observations as flat named arrays ("leaves").

An episode on disk stores each structure as one array per leaf: a Dict space's keys become leaves, any
other space is a single leaf (``value`` for actions, ``frame`` for observations). The description is
stored in the episode attributes so every reader can rebuild the native action exactly, without the
env installed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from gymrec.shared.errors import AgentActionError, CorruptEpisodeError, EnvCreationError

ACTION_LEAF = "value"
OBS_LEAF = "frame"


@dataclass(frozen=True)
class Leaf:
    name: str
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def _bound(values: np.ndarray) -> Any:
    flat = np.unique(values)
    if flat.size == 1:
        return flat[0].item()
    return values.tolist()


def describe_space(space: gym.Space) -> dict[str, Any]:
    """A JSON-able description that ``leaves_of`` and ``decode_action`` understand."""
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiBinary):
        shape = [int(x) for x in np.atleast_1d(np.asarray(space.n))]
        return {"type": "MultiBinary", "shape": shape}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": np.asarray(space.nvec).tolist(), "dtype": str(space.dtype)}
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": _bound(space.low),
            "high": _bound(space.high),
        }
    if isinstance(space, gym.spaces.Dict):
        return {"type": "Dict", "spaces": {k: describe_space(s) for k, s in space.spaces.items()}}
    return {"type": type(space).__name__, "unsupported": True}


def _leaf_of(name: str, desc: dict[str, Any]) -> Leaf | None:
    kind = desc["type"]
    if kind == "Discrete":
        return Leaf(name, np.dtype(np.int64), ())
    if kind == "MultiBinary":
        return Leaf(name, np.dtype(np.int8), tuple(desc["shape"]))
    if kind == "MultiDiscrete":
        return Leaf(name, np.dtype(desc.get("dtype", "int64")), (len(desc["nvec"]),))
    if kind == "Box":
        return Leaf(name, np.dtype(desc["dtype"]), tuple(desc["shape"]))
    return None


def leaves_of(desc: dict[str, Any], single_name: str) -> list[Leaf]:
    """The arrays a structure is stored as; unsupported sub-spaces (e.g. Text) are left out."""
    if desc["type"] == "Dict":
        found = [_leaf_of(k, d) for k, d in desc["spaces"].items()]
        return [leaf for leaf in found if leaf is not None]
    leaf = _leaf_of(single_name, desc)
    if leaf is None:
        raise CorruptEpisodeError(f"space type {desc['type']} cannot be recorded")
    return [leaf]


def action_leaves(desc: dict[str, Any]) -> list[Leaf]:
    return leaves_of(desc, ACTION_LEAF)


def obs_leaves(desc: dict[str, Any]) -> list[Leaf]:
    return leaves_of(desc, OBS_LEAF)


def encode_action(desc: dict[str, Any], action: Any) -> dict[str, np.ndarray]:
    """Native action -> one array per leaf, in the leaf dtype; rejects values that would not round-trip."""
    if desc["type"] == "Discrete" and isinstance(action, int | np.integer):
        # The per-step common case (every Atari game): no array round trip.
        if desc["start"] <= action < desc["start"] + desc["n"]:
            return {ACTION_LEAF: np.int64(action)}  # type: ignore[dict-item]
    try:
        if desc["type"] == "Dict":
            out = {}
            for leaf in action_leaves(desc):
                out[leaf.name] = _cast(np.asarray(action[leaf.name]), leaf)
            return out
        (leaf,) = action_leaves(desc)
        return {leaf.name: _cast(np.asarray(action), leaf)}
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise AgentActionError(
            f"action {action!r} does not fit the action space {desc['type']}",
            "return an action from env.action_space",
        ) from e


def action_problem(space: gym.Space, action: Any) -> str | None:
    """Why ``action`` is not an action of ``space``, or None if it is.

    ``space.contains`` plus exact dtypes: gymnasium's Box and MultiBinary accept any castable array
    (a float array of 0/1 for MultiBinary), but what is journaled must be what the env was given,
    so an array must already have the space's dtype (any integer dtype for Discrete).
    """
    if isinstance(space, gym.spaces.Dict):
        if not isinstance(action, dict) or set(action) != set(space.spaces):
            return f"a Dict action needs exactly the keys {sorted(space.spaces)}"
        for key, sub in space.spaces.items():
            problem = action_problem(sub, action[key])
            if problem is not None:
                return f"{key}: {problem}"
        return None
    if isinstance(action, np.ndarray | np.generic) and space.dtype is not None:
        want = np.dtype(space.dtype)
        exact = action.dtype.kind in "iu" if isinstance(space, gym.spaces.Discrete) else action.dtype == want
        if not exact:
            return f"dtype {action.dtype} is not {want}"
    try:
        inside = bool(space.contains(action))
    except (TypeError, ValueError, IndexError, OverflowError) as e:  # contains() raises on alien values (2**70)
        return f"{type(e).__name__}: {e}"
    return None if inside else f"outside {space}"


def action_checker(space: gym.Space) -> Callable[[Any], str | None]:
    """``action_problem`` bound to ``space``, with the per-step common case (a Python or NumPy int64 in
    a Discrete range: every Atari agent) answered by two int comparisons. ``space.contains`` plus the
    dtype checks cost ~27 us a step under cProfile; anything else, and every refusal (for its
    message), still goes through ``action_problem``.
    """
    if type(space) is gym.spaces.Discrete:
        low, high = int(space.start), int(space.start) + int(space.n)

        def check(action: Any) -> str | None:
            kind = type(action)
            if (kind is int or kind is np.int64) and low <= action < high:
                return None
            return action_problem(space, action)

        return check
    return functools.partial(action_problem, space)


def _cast(value: np.ndarray, leaf: Leaf) -> np.ndarray:
    if value.shape != leaf.shape:
        raise ValueError(f"shape {value.shape} != {leaf.shape}")
    cast = value.astype(leaf.dtype, copy=False)
    if leaf.dtype.kind in "iub" and not np.array_equal(cast, value):
        raise ValueError("value does not fit the integer dtype")
    return cast


def decode_action(desc: dict[str, Any], leaves: dict[str, np.ndarray]) -> Any:
    """One step's leaves -> the native action the env expects (int for Discrete)."""
    if desc["type"] == "Dict":
        return {name: decode_action(sub, {ACTION_LEAF: leaves[name]}) for name, sub in desc["spaces"].items()}
    value = leaves[ACTION_LEAF]
    if desc["type"] == "Discrete":
        return int(value)
    return np.asarray(value, dtype=action_leaves(desc)[0].dtype)


def split_observation(obs: Any) -> dict[str, np.ndarray]:
    """A native observation -> one array per leaf (Dict keys, or ``frame``)."""
    if isinstance(obs, dict):
        return {k: np.asarray(v) for k, v in obs.items()}
    return {OBS_LEAF: np.asarray(obs)}


def image_key(obs_desc: dict[str, Any]) -> str:
    """The leaf that holds the picture a person sees (VizDoom: ``screen``)."""
    if obs_desc["type"] == "Dict":
        keys = list(obs_desc["spaces"])
        return "screen" if "screen" in keys else keys[0]
    return OBS_LEAF


def check_recordable(env_id: str, kwargs: dict[str, Any], obs_desc: dict[str, Any]) -> None:
    """Refuse, before anything is recorded, an env whose picture gymrec cannot publish.

    The dataset stores each frame as an image (uint8 HxW, or HxWxC with 1, 3 or 4 channels): an episode
    of anything else (``obs_type=ram``: 128 bytes of console memory) would sit in the spool forever.
    """
    key = image_key(obs_desc)
    leaf = next((leaf for leaf in obs_leaves(obs_desc) if leaf.name == key), None)
    image = leaf is not None and leaf.dtype == np.uint8 and (
        len(leaf.shape) == 2 or (len(leaf.shape) == 3 and leaf.shape[2] in (1, 3, 4)))
    if not image:
        what = f"{leaf.dtype}, shape {leaf.shape}" if leaf is not None else "missing"
        raise EnvCreationError(f"cannot record {env_id} with {kwargs or 'no kwargs'}: its observation {key!r} ({what}) is "
                               "not an 8-bit image, which the dataset stores each frame as",
                               "use the env's image observations (e.g. drop --env-kwarg obs_type=ram)")  # fmt: skip
