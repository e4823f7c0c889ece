"""The dataset layout contract (format version 3): paths, column names, and how actions decode.

The uploader writes this layout (to the Hub or a local directory; its Arrow/``datasets`` encoding is
``gymrec.uploader.encoding``) and replay reads it. Only numpy is needed here, so both sides and any
reader share one definition.

    README.md                                      the card, rendered from meta/info.json
    meta/info.json                                 format_version, totals per config, features, shard settings
    meta/preview/<config>.png                      a strip of frames per config
    data/<config>/<ss>/<shard>.parquet             one row per step, many episodes, row groups <= 1,000 rows / 64 MB
    frames/<config>/<ss>/<shard>.parquet           format 3: one row per block of <= 64 frames, row groups <= 16 blocks / 1 MB
    meta/episodes/<config>/<ss>/<shard>.parquet    one row per episode of that shard (the index)

Format 3 keeps the frames out of the step rows: ``frames/`` holds them as temporal blocks
(``shared.dataset.blocks``; rows ``episode_id, block, first_step, n, data``), an episode's
``length + 1`` observations (the final one included) in consecutive rows, and its index row says
which file and rows (``frames_file``, ``frames_row_start``, ``frames_row_count``). The step rows keep
every scalar column and ``observation_hash``, plus ``preview``: a lossless WebP/PNG of the first
frame of each block (null on other rows), which is what the Hub dataset viewer shows. Format 2 kept
every frame as WebP in the step rows' ``observation`` column; it is still read, and converted by
``gymrec-uploader compact --to-format 3``.

``<shard>`` is a 32-hex-digit id, deterministic in what the shard holds (the sorted episode ids of an
upload batch, or the merged shards of a compaction), so a retried or racing commit can only write the
same paths again; ``<ss>`` is its first two digits. No folder needs a shared counter, and the
Hub's 100k-files-per-repo limit keeps every folder far below 10k entries (256 sub-folders). Format 3
writes three files a batch and config (data, frames, index) where format 2 wrote two, so a repo
reaches that limit after ~33k uncompacted batches instead of 50k; ``gymrec-uploader compact`` merges
them, and a commit (at most 100 files) holds at most 24 configs (``uploader.batching.MAX_CONFIGS``).

Action column encoding (one value per row):

- ``Discrete``: int64 (the env's own value, ``start`` included).
- ``MultiBinary``: list of int8 (nested lists for a multi-dimensional ``n``).
- ``MultiDiscrete``: list of the space's integer dtype (int64 by default).
- ``Box``: list of the space's dtype (float32 for float32 boxes), nested for multi-dim boxes,
  a plain scalar for a shape ``()`` box.
- ``Dict``: a struct with one field per key, each field encoded by the rules above.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from gymrec.shared.errors import DatasetError
from gymrec.shared.spool.spaces import ACTION_LEAF, action_leaves, decode_action

FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)
DATA_DIR = "data"
FRAMES_DIR = "frames"
META_DIR = "meta"
INDEX_DIR = f"{META_DIR}/episodes"
PREVIEW_DIR = f"{META_DIR}/preview"
INFO_PATH = f"{META_DIR}/info.json"
CARD_PATH = "README.md"
SHARD_SUFFIX = ".parquet"
V1_META_SUFFIX = ".json"  # format 1 kept one meta/episodes/<id>.json per episode

# The dataset viewer refuses row groups over ~300 MB; these keep a row group well under it.
ROW_GROUP_ROWS = 1000
ROW_GROUP_BYTES = 64 << 20

# Frame blocks (format 3): small row groups, so a window's block is one short read.
FRAMES_ROW_GROUP_BLOCKS = 16  # each row group's footer entry costs ~1 KB: 8 blocks cost 2 B a frame
FRAMES_ROW_GROUP_BYTES = 1 << 20
BLOCK_EPISODE_COLUMN = "episode_id"
BLOCK_INDEX_COLUMN = "block"
BLOCK_FIRST_STEP_COLUMN = "first_step"
BLOCK_COUNT_COLUMN = "n"
BLOCK_DATA_COLUMN = "data"

# Step rows (data shards).
EPISODE_ID_COLUMN = "episode_id"
STEP_COLUMN = "step"
OBS_COLUMN = "observation"  # format 2: every frame, an Image
PREVIEW_COLUMN = "preview"  # format 3: the first frame of each block, an Image (null elsewhere)
OBS_HASH_COLUMN = "observation_hash"
ACTION_COLUMN = "action"
INFO_PREFIX = "info_"
FINAL_PREFIX = "final_"

# Episode rows (index shards): these plus the recorded attributes' own fields.
INDEX_ATTRS_COLUMN = "attributes"  # every recorded attribute, as JSON: what replay rebuilds the env from
INDEX_CONFIG_COLUMN = "config"
INDEX_DATA_FILE_COLUMN = "data_file"
INDEX_ROW_START_COLUMN = "row_start"
INDEX_ROW_COUNT_COLUMN = "row_count"
INDEX_FINAL_COLUMN = "final_observation"
INDEX_FINAL_HASH_COLUMN = "final_observation_hash"
INDEX_FINAL_EXTRA_COLUMN = "final_extra"  # JSON {leaf: value} of the final observation's non-image leaves
INDEX_FRAMES_FILE_COLUMN = "frames_file"  # format 3: where the episode's frame blocks are
INDEX_FRAMES_ROW_START_COLUMN = "frames_row_start"
INDEX_FRAMES_ROW_COUNT_COLUMN = "frames_row_count"
INDEX_FRAME_SHAPE_COLUMN = "frame_shape"  # the image leaf's shape (uint8)

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_SHARD_ID = re.compile(r"^[0-9a-f]{32}$")


def env_slug(env_id: str) -> str:
    """``ALE/Breakout-v5`` -> ``ale-breakout-v5``: the data folder and the dataset config name."""
    return _NON_ALNUM.sub("-", env_id.lower()).strip("-")


def shard_id(members: Iterable[str]) -> str:
    """The deterministic id of a shard (or an upload batch) holding ``members``, in any order."""
    text = "\n".join(sorted(set(members)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _shard_path(root: str, config: str, shard: str) -> str:
    if not _SHARD_ID.match(shard):
        raise ValueError(f"not a shard id: {shard!r}")
    return f"{root}/{config}/{shard[:2]}/{shard}{SHARD_SUFFIX}"


def data_path(config: str, shard: str) -> str:
    return _shard_path(DATA_DIR, config, shard)


def frames_path(config: str, shard: str) -> str:
    return _shard_path(FRAMES_DIR, config, shard)


def frames_glob(config: str) -> str:
    return f"{FRAMES_DIR}/{config}/*/*{SHARD_SUFFIX}"


def index_path(config: str, shard: str) -> str:
    return _shard_path(INDEX_DIR, config, shard)


def data_glob(config: str) -> str:
    return f"{DATA_DIR}/{config}/*/*{SHARD_SUFFIX}"


def index_glob(config: str) -> str:
    return f"{INDEX_DIR}/{config}/*/*{SHARD_SUFFIX}"


def preview_path(config: str) -> str:
    return f"{PREVIEW_DIR}/{config}.png"


def is_index_path(path: str) -> bool:
    """``meta/episodes/<config>/<ss>/<shard>.parquet``."""
    parts = path.split("/")
    return (len(parts) == 5 and path.startswith(INDEX_DIR + "/") and path.endswith(SHARD_SUFFIX)
            and bool(_SHARD_ID.match(parts[4][: -len(SHARD_SUFFIX)])))  # fmt: skip


def is_v1_meta_path(path: str) -> bool:
    """A format-1 per-episode ``meta/episodes/<id>.json``: the old layout."""
    rest = path[len(INDEX_DIR) + 1 :]
    return path.startswith(INDEX_DIR + "/") and "/" not in rest and rest.endswith(V1_META_SUFFIX)


def version_problem(info: dict[str, Any] | None, where: str, v1_files: bool, writing: bool = False) -> str | None:
    """Why a dataset cannot be read (or, ``writing``, extended) by this gymrec, as one line; None when it can."""
    if info is None:
        if v1_files:
            return (f"{where} is a format-1 gymrec dataset (one meta/episodes/<id>.json per episode); this gymrec "
                    f"reads formats {READABLE_VERSIONS[0]}-{FORMAT_VERSION} only")  # fmt: skip
        return None
    found = info.get("format_version")
    if found not in READABLE_VERSIONS:
        return (f"{where} has format_version {found!r} in {INFO_PATH}; this gymrec reads formats "
                f"{READABLE_VERSIONS[0]}-{FORMAT_VERSION} and writes format {FORMAT_VERSION}")  # fmt: skip
    if writing and found != FORMAT_VERSION:
        return (f"{where} is a format-{found} dataset and this gymrec writes format {FORMAT_VERSION}; convert it "
                f"first with: gymrec-uploader compact --to-format {FORMAT_VERSION}")  # fmt: skip
    return None


def format_of(info: dict[str, Any]) -> int:
    """A checked info.json's format version."""
    return int(info.get("format_version", FORMAT_VERSION))


def decode_action_value(action_space_desc: dict[str, Any], value: Any) -> Any:
    """One row's action value (as ``datasets`` returns it) -> the native action the env takes.

    Gives exactly what ``shared.spool.spaces.decode_action`` gives for the spool's leaves: an int for
    Discrete, a numpy array in the leaf dtype otherwise, a dict of those for Dict spaces.
    """
    specs = action_leaves(action_space_desc)
    if action_space_desc["type"] == "Dict":
        raw = {leaf.name: np.asarray(value[leaf.name], dtype=leaf.dtype).reshape(leaf.shape) for leaf in specs}
        return decode_action(action_space_desc, raw)
    (leaf,) = specs
    return decode_action(action_space_desc, {ACTION_LEAF: np.asarray(value, dtype=leaf.dtype).reshape(leaf.shape)})


def parse_info(data: bytes, where: str) -> dict[str, Any]:
    """``meta/info.json``'s bytes as a dict, or one line saying what is wrong with it."""
    try:
        found = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise DatasetError(f"{where}: {INFO_PATH} is not valid JSON ({e})", "the dataset is damaged") from e
    if not isinstance(found, dict):
        raise DatasetError(f"{where}: {INFO_PATH} is not a JSON object", "the dataset is damaged")
    return found
