"""The spool schema: how one episode lies on disk. Version it; readers check it.

A spool directory holds one directory per episode::

    <episode_id>.partial/      being written (or orphaned by a crash); never read as data
    <episode_id>.zarr/         sealed: complete, immutable, the only name readers trust

Inside, an episode is a Zarr v3 group::

    zarr.json                  group attributes (``shared.spool.attrs.EpisodeAttrs``)
    obs/<leaf>                 (T+1, ...)  observation t is the one action t was chosen on; row T is final
    hash/<leaf>                (T+1,) uint64, xxh3-64 of each observation row's raw bytes (C order)
    action/<leaf>              (T, ...)    native actions, one array per leaf (see shared.spool.spaces)
    reward                     (T,) float64
    terminated, truncated      (T,) bool
    timestamp                  (T,) float64, wall-clock seconds when action t was applied
    shown_ns, decided_ns       (T,) int64, time.monotonic_ns() when frame t was on screen and when
                               action t was sampled (0: no window); optional, absent in older episodes
    actor                      (T,) uint8, who chose action t: an index into ``ACTORS``; optional
    info/<key>                 (T,)        numeric scalar info values, where the env gives them
    input/<column>             (E,) human play: the raw input log, one row per event (``INPUT_COLUMNS``)

Only while it is a ``.partial``, beside the Zarr nodes (sealing removes them, so a sealed episode is a
plain Zarr hierarchy: zarr 3.1 warns about any other entry in a group)::

    journal.bin                every step's action, stored before the step runs
    committed.json             {"steps": n, "crc32c"}: rows [0, n) are durable (recovery still checks the chunks)
    writer.lock                flock held by the live writer; free means the writer is gone
    owners.json                the recorder's and writer process's pids: alive (even stopped) means not orphaned

A sealed episode's checksums are an attribute (``CHECKSUMS_ATTR``, ``shared.spool.checksums``); episodes
sealed before that keep them in ``checksums.json``, which readers still check.

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
from types import MappingProxyType

import numpy as np
import xxhash

from gymrec.shared.spool.spaces import Leaf

# 2: every chunk carries a crc32c (zarr's codec) and flat chunk keys; see shared.spool.chunks. 1 still reads.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
CHUNK_SEPARATOR = "."  # new episodes' chunk keys: c.<i>.0.0 (version 1 episodes use "/")
CHUNK_STEPS = 64
ZSTD_LEVEL = 3  # observations: level 3 compresses Breakout frames at ~41k frames/s
# Per-step scalars and actions (rows of a few bytes, 64 to a chunk): level 9 shrinks timestamps,
# actions and frame counters by 25-40 % against level 3, ~2.4 B/frame of spool (P3). Level 19 saves
# 0.12 B/frame more but cost twice the CPU (612 against 302 us per chunk of Breakout's 8 small arrays,
# measured on 40 episodes): 5 us a frame of the writer process, which P11 needs for a second game.
SMALL_ROW_BYTES = 64
SMALL_ROW_ZSTD_LEVEL = 9


def zstd_level(row_bytes: int) -> int:
    """The zstd level of an array whose rows hold ``row_bytes`` bytes."""
    return SMALL_ROW_ZSTD_LEVEL if row_bytes <= SMALL_ROW_BYTES else ZSTD_LEVEL

METADATA_NAME = "zarr.json"  # a Zarr v3 node's metadata document (group or array)
PARTIAL_SUFFIX = ".partial"
SEALED_SUFFIX = ".zarr"
JOURNAL_NAME = "journal.bin"
COMMITTED_NAME = "committed.json"
LOCK_NAME = "writer.lock"
CHECKSUMS_NAME = "checksums.json"  # episodes sealed before CHECKSUMS_ATTR: crc32c of every array's metadata
OWNERS_NAME = "owners.json"  # {"host", "owners": [{"pid", "started"}]}: the processes writing it
# The root attribute sealing writes: {"attributes": crc32c of the other attributes, "metadata": {path: crc32c}}.
CHECKSUMS_ATTR = "checksums"
# What only a .partial holds. A copy in a sealed episode is what a crash between the rename and the
# unlinks left (the sealed rows are all durable by then), so the next recovery scan removes it.
WRITING_FILES = (JOURNAL_NAME, COMMITTED_NAME, LOCK_NAME, OWNERS_NAME)
STAGING_SUFFIX = ".creating"  # .<id>.partial.creating: a .partial being built (shared.spool.writer)

OBS_GROUP = "obs"
HASH_GROUP = "hash"
ACTION_GROUP = "action"
INFO_GROUP = "info"
REWARD = "reward"
TERMINATED = "terminated"
TRUNCATED = "truncated"
TIMESTAMP = "timestamp"

# The raw input log of human play (recorder.input_log), one row per event, times relative to the
# attribute ``input_log["origin_ns"]``. Chunks of up to INPUT_CHUNK_EVENTS events (~1.8 h of play).
INPUT_GROUP = "input"
INPUT_COLUMNS: Mapping[str, np.dtype] = MappingProxyType({
    "t_ns": np.dtype(np.int64),
    "kind": np.dtype(np.uint8),
    "code": np.dtype(np.int32),  # SDL keycodes (< 2**31), controller buttons and axes
    "value": np.dtype(np.int32),  # axis position, or the controller's instance id
})
INPUT_CHUNK_EVENTS = 65_536


def input_path(column: str) -> str:
    return f"{INPUT_GROUP}/{column}"


class EndReason(enum.StrEnum):
    TERMINATED = "terminated"
    TRUNCATED = "truncated"
    QUIT = "quit"
    DISCARDED = "discarded"
    RECOVERED = "recovered"
    BRANCHED = "branched"  # the player rewound and played on: the rest is a branch episode


STEP_SCALARS: Mapping[str, np.dtype] = MappingProxyType({
    REWARD: np.dtype(np.float64),
    TERMINATED: np.dtype(np.bool_),
    TRUNCATED: np.dtype(np.bool_),
    TIMESTAMP: np.dtype(np.float64),
})


SHOWN_NS = "shown_ns"
DECIDED_NS = "decided_ns"
ACTOR = "actor"
# How action t relates to observation t (``EpisodeAttrs.pairing``). ON_SCREEN: action t is what the
# player (or agent) did while observation t was on screen (gymrec >= 0.2, every collector). LAGGED:
# a person's action t was gathered while observation t-1 was on screen: human steps recorded before
# 0.2, whose attributes lack ``pairing``; shift them by one step to pair them, or leave them out.
PAIRING_ON_SCREEN = "on_screen"
PAIRING_LAGGED = "lagged"

ACTORS = ("human", "agent", "copied")  # the values of ``actor``: copied is a branch's inherited prefix
# Optional per-step arrays (readers must not require them): the player's timing (see
# recorder.input_log) and who chose each action (human, or the agent with --takeover).
STEP_TIMES: Mapping[str, np.dtype] = MappingProxyType({
    SHOWN_NS: np.dtype(np.int64),
    DECIDED_NS: np.dtype(np.int64),
    ACTOR: np.dtype(np.uint8),
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


def sealed_name(episode_id: str) -> str:
    return episode_id + SEALED_SUFFIX


def partial_name(episode_id: str) -> str:
    return episode_id + PARTIAL_SUFFIX


# --- the action journal -------------------------------------------------------------------------
# A fixed-size record a step: timestamp, the per-step fields of the STEP_TIMES arrays (shown_ns,
# decided_ns, actor: what recovery must keep of a step besides its action), the action leaves' raw
# bytes, and a CRC so that a torn final record (the process died mid-write) is recognised and ignored
# instead of misread. Journals written before the step fields (gymrec <= 0.2.0) lack them; a reader
# tells the two apart by which layout's first record passes its CRC (``journal_format``).

_HEADER = struct.Struct("<d")
_STEP_FIELDS = struct.Struct("<qqB")  # shown_ns, decided_ns, actor
_CRC = struct.Struct("<I")


@dataclass(frozen=True)
class Journaled:
    """A journal's intact records: per step its wall-clock time, action leaves and step fields."""

    timestamps: np.ndarray
    leaves: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]  # SHOWN_NS, DECIDED_NS, ACTOR; empty for a journal without them


@dataclass(frozen=True)
class JournalFormat:
    leaves: tuple[Leaf, ...]
    step_fields: bool = True  # False: a journal from before the step fields

    @property
    def record_size(self) -> int:
        return _HEADER.size + (_STEP_FIELDS.size if self.step_fields else 0) + sum(leaf.nbytes for leaf in self.leaves) + _CRC.size

    def pack(self, timestamp: float, action: dict[str, np.ndarray], times: tuple[int, int] = (0, 0), actor: int = 0) -> bytes:
        body = _HEADER.pack(timestamp) + (_STEP_FIELDS.pack(times[0], times[1], actor) if self.step_fields else b"")
        body += b"".join(np.ascontiguousarray(action[leaf.name], dtype=leaf.dtype.newbyteorder("<")).tobytes()
                         for leaf in self.leaves)  # fmt: skip
        return body + _CRC.pack(zlib.crc32(body))

    def first_record_ok(self, data: bytes) -> bool:
        size = self.record_size
        return len(data) >= size and zlib.crc32(data[: size - _CRC.size]) == _CRC.unpack_from(data, size - _CRC.size)[0]

    def unpack_all(self, data: bytes) -> Journaled:
        """All intact records. Stops at the first torn or corrupt record."""
        size = self.record_size
        count = len(data) // size
        timestamps = np.empty(count, dtype=np.float64)
        leaves = {leaf.name: np.empty((count, *leaf.shape), dtype=leaf.dtype) for leaf in self.leaves}
        steps = {name: np.empty(count, dtype=STEP_TIMES[name]) for name in (SHOWN_NS, DECIDED_NS, ACTOR)} if self.step_fields else {}
        good = 0
        for i in range(count):
            record = data[i * size : (i + 1) * size]
            body, crc = record[: -_CRC.size], _CRC.unpack(record[-_CRC.size :])[0]
            if zlib.crc32(body) != crc:
                break
            timestamps[i] = _HEADER.unpack_from(body)[0]
            offset = _HEADER.size
            if self.step_fields:
                for name, value in zip((SHOWN_NS, DECIDED_NS, ACTOR), _STEP_FIELDS.unpack_from(body, offset), strict=True):
                    steps[name][i] = value
                offset += _STEP_FIELDS.size
            for leaf in self.leaves:
                raw = np.frombuffer(body, dtype=leaf.dtype.newbyteorder("<"), count=max(1, int(np.prod(leaf.shape))), offset=offset)
                leaves[leaf.name][i] = raw.reshape(leaf.shape)
                offset += leaf.nbytes
            good += 1
        return Journaled(timestamps[:good], {k: v[:good] for k, v in leaves.items()}, {k: v[:good] for k, v in steps.items()})


def journal_format(leaves: tuple[Leaf, ...], data: bytes) -> JournalFormat:
    """The layout ``data`` was written in: the current one unless only the older one's first record checks."""
    current = JournalFormat(leaves)
    older = JournalFormat(leaves, step_fields=False)
    return older if not current.first_record_ok(data) and older.first_record_ok(data) else current


def id_from_name(name: str) -> str | None:
    """The id a spool directory is named after (``<id>.zarr``, ``<id>.partial``, ``<id>.<owner>.zarr``).

    None for a directory a person renamed (a copy to replay, say): then only the id's form is checked.
    """
    stem = name.split(".", 1)[0]
    return stem if is_uuid(stem) else None


def is_uuid(text: object) -> bool:
    """The one UUID check: episode ids name directories, files and repo paths."""
    try:
        return isinstance(text, str) and str(uuid.UUID(text)) == text
    except ValueError:
        return False
