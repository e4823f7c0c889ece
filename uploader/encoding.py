"""The Arrow / ``datasets`` encoding of the columns ``gymrec.shared.dataset.layout`` names.

Action column encoding (one value per row) is documented in ``gymrec.shared.dataset.layout``.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import pyarrow as pa

from gymrec.shared.spool.spaces import Leaf, action_leaves


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
