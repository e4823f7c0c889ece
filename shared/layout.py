"""The dataset layout contract: where each file lives, the column names, and how actions decode.

The uploader writes this layout (to the Hub or a local directory; its Arrow/``datasets`` encoding is
``gymrec.uploader.encoding``) and replay reads it. Only numpy is needed here, so both sides and any
reader share one definition. Paths are deterministic in the episode id, so a retried or racing upload
can only ever write the same file again, never a second copy.

Action column encoding (one value per row):

- ``Discrete``: int64 (the env's own value, ``start`` included).
- ``MultiBinary``: list of int8 (nested lists for a multi-dimensional ``n``).
- ``MultiDiscrete``: list of the space's integer dtype (int64 by default).
- ``Box``: list of the space's dtype (float32 for float32 boxes), nested for multi-dim boxes,
  a plain scalar for a shape ``()`` box.
- ``Dict``: a struct with one field per key, each field encoded by the rules above.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from gymrec.shared.spaces import ACTION_LEAF, action_leaves, decode_action

DATA_DIR = "data"
META_DIR = "meta"
EPISODES_DIR = f"{META_DIR}/episodes"
FINAL_DIR = f"{META_DIR}/final"
PREVIEW_DIR = f"{META_DIR}/preview"
CARD_PATH = "README.md"

OBS_COLUMN = "observation"
OBS_HASH_COLUMN = "observation_hash"
ACTION_COLUMN = "action"
INFO_PREFIX = "info_"
FINAL_PREFIX = "final_"

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def env_slug(env_id: str) -> str:
    """``ALE/Breakout-v5`` -> ``ale-breakout-v5``: the data folder and the dataset config name."""
    return _NON_ALNUM.sub("-", env_id.lower()).strip("-")


def data_path(env_id: str, episode_id: str) -> str:
    return f"{DATA_DIR}/{env_slug(env_id)}/{episode_id}.parquet"


def data_glob(slug: str) -> str:
    return f"{DATA_DIR}/{slug}/*.parquet"


def meta_path(episode_id: str) -> str:
    return f"{EPISODES_DIR}/{episode_id}.json"


def final_obs_path(episode_id: str) -> str:
    return f"{FINAL_DIR}/{episode_id}.png"


def preview_path(slug: str) -> str:
    return f"{PREVIEW_DIR}/{slug}.png"


def episode_id_of_meta(path: str) -> str | None:
    """The id in ``meta/episodes/<id>.json``, or None for any other path."""
    prefix, suffix = EPISODES_DIR + "/", ".json"
    if path.startswith(prefix) and path.endswith(suffix) and "/" not in path[len(prefix) :]:
        return path[len(prefix) : -len(suffix)]
    return None


def decode_action_value(action_space_desc: dict[str, Any], value: Any) -> Any:
    """One row's action value (as ``datasets`` returns it) -> the native action the env takes.

    Gives exactly what ``shared.spaces.decode_action`` gives for the spool's leaves: an int for
    Discrete, a numpy array in the leaf dtype otherwise, a dict of those for Dict spaces.
    """
    specs = action_leaves(action_space_desc)
    if action_space_desc["type"] == "Dict":
        raw = {leaf.name: np.asarray(value[leaf.name], dtype=leaf.dtype).reshape(leaf.shape) for leaf in specs}
        return decode_action(action_space_desc, raw)
    (leaf,) = specs
    return decode_action(action_space_desc, {ACTION_LEAF: np.asarray(value, dtype=leaf.dtype).reshape(leaf.shape)})
