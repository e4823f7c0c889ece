"""The dataset layout: where each file of an episode lives, and how actions become a column.

This is the contract between the uploader (which writes it, to the Hub or a local directory) and
replay (which reads it). Paths are deterministic in the episode id, so a retried or racing upload
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

import datasets
import numpy as np
import pyarrow as pa

from gymrec.shared.spaces import ACTION_LEAF, Leaf, action_leaves, decode_action

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


# --- values as Arrow / datasets types ------------------------------------------------------------


def _value_feature(dtype: np.dtype) -> datasets.Value:
    return datasets.Value("bool" if dtype == np.bool_ else str(dtype))


def array_feature(dtype: np.dtype, shape: tuple[int, ...]) -> Any:
    """The datasets feature of one row of an array with this per-row shape: nested lists."""
    feature: Any = _value_feature(dtype)
    for _ in shape:
        feature = datasets.List(feature)
    return feature


def array_column(rows: np.ndarray) -> pa.Array:
    """(T, *shape) -> an Arrow array of T values, nested lists along ``shape``; zero-copy-ish."""
    rows = np.ascontiguousarray(rows)
    column: pa.Array = pa.array(rows.reshape(-1))
    # Wrap from the innermost axis outwards: each level groups ``size`` consecutive values.
    for size in reversed(rows.shape[1:]):
        count = len(column) // size if size else 0
        offsets = pa.array(np.arange(0, count * size + 1, size or 1, dtype=np.int32)[: count + 1])
        column = pa.ListArray.from_arrays(offsets, column)
    return column


def _leaf_feature(leaf: Leaf) -> Any:
    return array_feature(leaf.dtype, leaf.shape)


def action_feature(action_space_desc: dict[str, Any]) -> Any:
    """The datasets feature of the action column."""
    leaves = action_leaves(action_space_desc)
    if action_space_desc["type"] == "Dict":
        return {leaf.name: _leaf_feature(leaf) for leaf in leaves}
    return _leaf_feature(leaves[0])


def encode_action_column(action_space_desc: dict[str, Any], leaves: dict[str, np.ndarray]) -> pa.Array:
    """A batch of actions (one (T, ...) array per leaf, as in the spool) -> the action column."""
    specs = action_leaves(action_space_desc)
    if action_space_desc["type"] == "Dict":
        arrays = [array_column(np.asarray(leaves[leaf.name], dtype=leaf.dtype)) for leaf in specs]
        return pa.StructArray.from_arrays(arrays, names=[leaf.name for leaf in specs])
    (leaf,) = specs
    return array_column(np.asarray(leaves[leaf.name], dtype=leaf.dtype))


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
