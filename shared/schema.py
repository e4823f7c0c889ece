"""The spool schema: how one episode lies on disk. Version it; readers check it.

A spool directory holds one directory per episode::

    <episode_id>.partial/      being written (or orphaned by a crash); never read as data
    <episode_id>.zarr/         sealed: complete, immutable, the only name readers trust

Inside, an episode is a Zarr v3 group::

    zarr.json                  group attributes (see ``REQUIRED_ATTRS`` / ``SEAL_ATTRS``)
    obs/<leaf>                 (T+1, ...)  observation t is the one action t was chosen on; row T is final
    hash/<leaf>                (T+1,) uint64, xxh3-64 of each observation row's raw bytes (C order)
    action/<leaf>              (T, ...)    native actions, one array per leaf (see shared.spaces)
    reward                     (T,) float64
    terminated, truncated      (T,) bool
    timestamp                  (T,) float64, wall-clock seconds when action t was applied
    info/<key>                 (T,)        numeric scalar info values, where the env gives them
    journal.bin                every step's action, stored before the step runs (removed once sealed)
    committed.json             {"steps": n}: rows [0, n) of every array are on disk; trust only this
    writer.lock                flock held by the live writer; free means the writer is gone

All arrays are chunked along axis 0 only, ``CHUNK_STEPS`` rows a chunk, compressed with zstd. The
arrays' own shape metadata is set only at sealing: after a kill it is not to be trusted.
"""

from __future__ import annotations

import enum
import struct
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import xxhash

from gymrec.shared.spaces import Leaf

SCHEMA_VERSION = 1
CHUNK_STEPS = 64
ZSTD_LEVEL = 3

PARTIAL_SUFFIX = ".partial"
SEALED_SUFFIX = ".zarr"
JOURNAL_NAME = "journal.bin"
COMMITTED_NAME = "committed.json"
LOCK_NAME = "writer.lock"

OBS_GROUP = "obs"
HASH_GROUP = "hash"
ACTION_GROUP = "action"
INFO_GROUP = "info"
REWARD = "reward"
TERMINATED = "terminated"
TRUNCATED = "truncated"
TIMESTAMP = "timestamp"


class EndReason(enum.StrEnum):
    TERMINATED = "terminated"
    TRUNCATED = "truncated"
    QUIT = "quit"
    DISCARDED = "discarded"
    RECOVERED = "recovered"


# Written when the episode starts: enough to re-simulate it from the journal after a crash.
REQUIRED_ATTRS = (
    "schema_version",
    "episode_id",
    "env_id",
    "env_kwargs",
    "backend",
    "seed",
    "action_space",
    "observation_space",
    "image_key",
    "fps",
    "versions",
    "collector",
    "player",
    "started_at",
    "chunk_steps",
)
# Added at sealing.
SEAL_ATTRS = ("ended_at", "end_reason", "length", "episode_return")

STEP_SCALARS: Mapping[str, np.dtype] = MappingProxyType({
    REWARD: np.dtype(np.float64),
    TERMINATED: np.dtype(np.bool_),
    TRUNCATED: np.dtype(np.bool_),
    TIMESTAMP: np.dtype(np.float64),
})


def obs_path(leaf: str) -> str:
    return f"{OBS_GROUP}/{leaf}"


def hash_path(leaf: str) -> str:
    return f"{HASH_GROUP}/{leaf}"


def row_hash(row: np.ndarray) -> int:
    """The per-observation fingerprint replay compares before decoding any frame."""
    return xxhash.xxh3_64_intdigest(np.ascontiguousarray(row).data)


def action_path(leaf: str) -> str:
    return f"{ACTION_GROUP}/{leaf}"


def info_path(key: str) -> str:
    return f"{INFO_GROUP}/{key}"


def chunk_file(array_dir: Path, chunk_index: int, ndim: int) -> Path:
    """Where Zarr v3's default chunk key encoding keeps chunk ``chunk_index`` along axis 0."""
    return array_dir.joinpath("c", str(chunk_index), *(["0"] * (ndim - 1)))


def sealed_name(episode_id: str) -> str:
    return episode_id + SEALED_SUFFIX


def partial_name(episode_id: str) -> str:
    return episode_id + PARTIAL_SUFFIX


# --- the action journal -------------------------------------------------------------------------
# A fixed-size record a step: timestamp, the action leaves' raw bytes, and a CRC so that a torn
# final record (the process died mid-write) is recognised and ignored instead of misread.

_HEADER = struct.Struct("<d")
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class JournalFormat:
    leaves: tuple[Leaf, ...]

    @property
    def record_size(self) -> int:
        return _HEADER.size + sum(leaf.nbytes for leaf in self.leaves) + _CRC.size

    def pack(self, timestamp: float, action: dict[str, np.ndarray]) -> bytes:
        body = _HEADER.pack(timestamp) + b"".join(
            np.ascontiguousarray(action[leaf.name], dtype=leaf.dtype.newbyteorder("<")).tobytes()
            for leaf in self.leaves
        )
        return body + _CRC.pack(zlib.crc32(body))

    def unpack_all(self, data: bytes) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """All intact records: (timestamps, leaves). Stops at the first torn or corrupt record."""
        size = self.record_size
        count = len(data) // size
        timestamps = np.empty(count, dtype=np.float64)
        leaves = {leaf.name: np.empty((count, *leaf.shape), dtype=leaf.dtype) for leaf in self.leaves}
        good = 0
        for i in range(count):
            record = data[i * size : (i + 1) * size]
            body, crc = record[: -_CRC.size], _CRC.unpack(record[-_CRC.size :])[0]
            if zlib.crc32(body) != crc:
                break
            timestamps[i] = _HEADER.unpack_from(body)[0]
            offset = _HEADER.size
            for leaf in self.leaves:
                raw = np.frombuffer(body, dtype=leaf.dtype.newbyteorder("<"), count=max(1, int(np.prod(leaf.shape))), offset=offset)
                leaves[leaf.name][i] = raw.reshape(leaf.shape)
                offset += leaf.nbytes
            good += 1
        return timestamps[:good], {k: v[:good] for k, v in leaves.items()}


def id_from_name(name: str) -> str | None:
    """The id a spool directory is named after (``<id>.zarr``, ``<id>.partial``, ``<id>.<owner>.zarr``).

    None for a directory a person renamed (a copy to replay, say): then only the id's form is checked.
    """
    stem = name.split(".", 1)[0]
    return stem if _is_uuid(stem) else None


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def check_attrs(attrs: dict[str, Any], where: str, sealed: bool, expected_id: str | None = None) -> None:
    """Raise CorruptEpisodeError / SchemaVersionError unless ``attrs`` follow this schema."""
    from gymrec.shared.errors import CorruptEpisodeError, SchemaVersionError

    version = attrs.get("schema_version")
    if version is None:
        raise CorruptEpisodeError(f"{where}: not a gymrec episode (no schema_version attribute)")
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{where}: schema_version {version!r} is not supported (this gymrec reads {SCHEMA_VERSION})",
            "upgrade gymrec, or use the gymrec version that recorded it",
        )
    needed = REQUIRED_ATTRS + (SEAL_ATTRS if sealed else ())
    missing = [key for key in needed if key not in attrs]
    if missing:
        raise CorruptEpisodeError(f"{where}: missing attribute(s) {', '.join(missing)}", "the episode is damaged")
    # The id names files in datasets and repos: it must be the UUID the directory is named after,
    # never a path ("../../x") smuggled in through a damaged or hostile zarr.json.
    episode_id = attrs["episode_id"]
    if not (isinstance(episode_id, str) and _is_uuid(episode_id) and expected_id in (None, episode_id)):
        raise CorruptEpisodeError(f"{where}: episode_id {episode_id!r} is not this episode's UUID",
                                  "the episode is damaged")
