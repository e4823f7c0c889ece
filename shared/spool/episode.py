"""Read one episode from the spool, validated against ``shared.spool.schema``.

The uploader, replay and crash recovery all read through this class, so a damaged episode fails the
same way everywhere: a ``CorruptEpisodeError`` naming the episode and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gymrec.shared.errors import (
    ChunkCorruptError,
    CorruptEpisodeError,
    EmptyEpisodeError,
    EpisodeNotFoundError,
    ForeignChunksError,
)
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.checksums import check_sealed, chunks_digest, sealed_digests, verified
from gymrec.shared.spool.chunks import ArrayMeta
from gymrec.shared.spool.fsio import read_regular
from gymrec.shared.spool.spaces import Leaf, action_leaves, decode_action, obs_leaves

if TYPE_CHECKING:
    import zarr


@dataclass(frozen=True)
class StepBatch:
    """Rows [start, stop) of every per-step array; ``obs`` holds the observations those steps saw."""

    start: int
    stop: int
    obs: dict[str, np.ndarray]
    action: dict[str, np.ndarray]
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    timestamp: np.ndarray
    info: dict[str, np.ndarray]
    times: dict[str, np.ndarray] = field(default_factory=dict)  # the schema.STEP_TIMES arrays the episode has


def read_committed(path: Path) -> int:
    """How many steps the writer declared durable; 0 when it never committed a chunk."""
    where = f"{path.name}/{schema.COMMITTED_NAME}"
    try:
        return int(verified(read_regular(path / schema.COMMITTED_NAME), where)["steps"])
    except FileNotFoundError:
        return 0
    except CorruptEpisodeError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CorruptEpisodeError(f"{where} is unreadable ({e})", "the episode is damaged") from e


def _member_names(group: Path) -> list[str]:
    """The arrays and groups in a Zarr v3 group directory (each a sub-directory with its zarr.json).

    What ``group.keys()`` lists, read from the directory: zarr's three synchronous calls (open the
    info group, list it) cost ~2 ms an episode, half of opening one, which ``--all`` does twice.
    """
    if not (group / schema.METADATA_NAME).is_file():
        return []
    try:
        entries = list(group.iterdir())
    except OSError:
        return []
    return sorted(e.name for e in entries if (e / schema.METADATA_NAME).is_file())


def _group_attributes(path: Path) -> dict[str, Any]:
    """A Zarr v3 group's attributes, read from its ``zarr.json`` as zarr reads them.

    ``zarr.open_group`` costs ~3 ms (its event-loop thread), most of opening an episode, and
    importing zarr ~150 ms of a replay's start-up; only the uploader's conversion needs zarr's API.
    """
    document = json.loads(read_regular(path / schema.METADATA_NAME))
    if not isinstance(document, dict) or document.get("zarr_format") != 3 or document.get("node_type") != "group":
        raise ValueError("not a Zarr v3 group")
    attributes = document.get("attributes", {})
    if not isinstance(attributes, dict):
        raise ValueError("its attributes are not a JSON object")
    return attributes


def episode_attributes(path: Path, sealed: bool = False) -> EpisodeAttrs:
    """An episode's attributes, validated, without reading its arrays (cheap enough for every rescan of
    a spool); CorruptEpisodeError (a ValueError) or OSError when they cannot be read."""
    raw = _group_attributes(path)
    known = {k: v for k, v in raw.items() if k != schema.CHECKSUMS_ATTR}
    return EpisodeAttrs.from_dict(known, path.name, sealed=sealed, expected_id=schema.id_from_name(path.name))


class Episode:
    """A sealed episode (or, with ``trusted_length``, the committed part of a partial one)."""

    def __init__(self, path: Path, trusted_length: int | None = None) -> None:
        self.path = path
        where = path.name
        if not path.is_dir():
            raise EpisodeNotFoundError(f"no episode at {path}", "check the path or run 'gymrec-uploader status'")
        try:
            raw = _group_attributes(path)
        except (OSError, ValueError) as e:
            raise CorruptEpisodeError(f"{where}: not a readable Zarr group: {schema.METADATA_NAME} is missing or "
                                      f"unreadable ({e})", "the episode is damaged") from e
        sealed = trusted_length is None
        # The checksums are the spool's, not the episode's: they never travel with its attributes.
        known = {k: v for k, v in raw.items() if k != schema.CHECKSUMS_ATTR} if isinstance(raw, dict) else raw
        self.attrs = EpisodeAttrs.from_dict(known, where, sealed=sealed, expected_id=schema.id_from_name(path.name))
        self.length = int(self.attrs.length or 0) if sealed else int(trusted_length or 0)
        self.obs_leaves: list[Leaf] = obs_leaves(self.attrs.observation_space)
        self.action_leaves: list[Leaf] = action_leaves(self.attrs.action_space)
        self._metas: dict[str, ArrayMeta] = {}
        self.info_keys: list[str] = _member_names(path / schema.INFO_GROUP)
        self.time_keys: list[str] = [name for name in schema.STEP_TIMES if (path / name / schema.METADATA_NAME).is_file()]
        self._digests: dict[str, int] = {}
        if sealed:
            check_sealed(path, raw)  # after the field checks, so a damaged field is named as such
            self._digests = sealed_digests(raw, where)
            self._check_shapes()

    @property
    def group(self) -> zarr.Group:
        """The episode as a zarr group, for zarr's own API (the uploader's conversion)."""
        import zarr

        return zarr.open_group(str(self.path), mode="r")

    @property
    def id(self) -> str:
        return self.attrs.episode_id

    @property
    def chunk_digests(self) -> dict[str, int]:
        """Each array's chunk digest as sealed (empty for episodes sealed before digests, and partials)."""
        return dict(self._digests)

    @property
    def end_reason(self) -> str:
        return self.attrs.end_reason or ""

    def meta(self, name: str) -> ArrayMeta:
        """Array ``name``'s stored layout (read once per array)."""
        found = self._metas.get(name)
        if found is None:
            found = self._metas[name] = ArrayMeta.read(self.path / name, self.path.name, name)
        return found

    def _check_shapes(self) -> None:
        if self.length == 0:
            return
        expected: dict[str, tuple[int, ...]] = {
            schema.obs_path(leaf.name): (self.length + 1, *leaf.shape) for leaf in self.obs_leaves
        }
        expected |= {schema.hash_path(leaf.name): (self.length + 1,) for leaf in self.obs_leaves}
        expected |= {schema.action_path(leaf.name): (self.length, *leaf.shape) for leaf in self.action_leaves}
        expected |= {name: (self.length,) for name in schema.STEP_SCALARS}
        for name, shape in expected.items():
            meta = self.meta(name)
            if meta.shape != shape:
                raise CorruptEpisodeError(f"{self.path.name}: array {name!r} has shape {meta.shape}, expected {shape}")
            # zarr reads a missing chunk as fill zeros: a truncated copy must fail, not read as blank frames.
            for index in range(-(-shape[0] // meta.chunk_rows)):
                if not meta.has_chunk(index):
                    raise ChunkCorruptError(self.path.name, name, index,
                                            (index * meta.chunk_rows, (index + 1) * meta.chunk_rows), "is missing")

    def verify_checksums(self, skip: frozenset[str] = frozenset()) -> None:
        """Check every chunk of every array against its crc32c without decoding (ChunkCorruptError),
        and each array's chunks against the digest sealing kept (ForeignChunksError).

        Replay compares hashes, not frames, so a damaged frame chunk would otherwise go unnoticed;
        this reads only the compressed bytes (~130 B a frame on Atari). Version 1 chunks carry no
        checksum: only their presence is checked. ``skip``: arrays the caller reads in full (every read
        checks the crc32c of what it decodes); only their crc32c trailers are read here.
        """
        for name, meta, count in self._stored_arrays():
            if name in skip:
                trailers = [meta.trailer(i, self.path.name, name) for i in range(count)]
            else:
                trailers = [meta.check_chunk(i, self.path.name, name) for i in range(count)]
            self._check_digest(name, trailers)

    def verify_chunk_digests(self) -> None:
        """Each array's chunks are the ones this episode sealed (ForeignChunksError), reading only their
        4-byte crc32c trailers (~5 us a chunk): for readers that decode, and so crc-check, every chunk."""
        for name, meta, count in self._stored_arrays():
            if name in self._digests:
                self._check_digest(name, [meta.trailer(i, self.path.name, name) for i in range(count)])

    def _stored_arrays(self) -> list[tuple[str, ArrayMeta, int]]:
        """Every recorded array: its name, layout and the number of chunks its rows fill."""
        per_obs = (schema.OBS_GROUP + "/", schema.HASH_GROUP + "/")
        names = [p for leaf in self.obs_leaves for p in (schema.obs_path(leaf.name), schema.hash_path(leaf.name))]
        names += [schema.action_path(leaf.name) for leaf in self.action_leaves] + list(schema.STEP_SCALARS)
        names += [schema.info_path(key) for key in self.info_keys]
        out = []
        for name in names:
            meta = self.meta(name)
            rows = self.length + 1 if name.startswith(per_obs) else self.length
            out.append((name, meta, -(-rows // meta.chunk_rows)))
        for name in self._input_arrays():
            meta = self.meta(name)
            out.append((name, meta, -(-meta.shape[0] // meta.chunk_rows)))
        return out

    def _check_digest(self, name: str, trailers: list[bytes]) -> None:
        expected = self._digests.get(name)
        if expected is not None and chunks_digest(trailers) != expected:
            raise ForeignChunksError(self.path.name, name)

    def _input_arrays(self) -> list[str]:
        log = self.attrs.input_log
        if not isinstance(log, dict) or "t_ns" in log:
            return []  # none, or stored in the attributes (episodes sealed before the input/ arrays)
        return [schema.input_path(column) for column in schema.INPUT_COLUMNS]

    def input_log(self) -> dict[str, Any] | None:
        """The raw input log of human play, columnar (``origin_ns``, ``kinds``, ``t_ns``, ``kind``, ...).

        Stored as ``input/<column>`` arrays; episodes sealed before that keep it whole in the
        attribute, which is returned as it is. None for agents' episodes.
        """
        log = self.attrs.input_log
        names = self._input_arrays()
        if log is None or not names:
            return log
        where = self.path.name
        try:
            count = int(log["events"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptEpisodeError(f"{where}: attribute input_log is unreadable ({e})", "the episode is damaged") from e
        columns = {}
        for name in names:
            meta = self.meta(name)
            if meta.shape != (count,):
                raise CorruptEpisodeError(f"{where}: array {name!r} has shape {meta.shape}, expected ({count},)",
                                          "the episode is damaged")
            columns[name.rsplit("/", 1)[1]] = meta.read_rows(0, count, where, name).tolist()
        return {k: v for k, v in log.items() if k != "events"} | columns

    def require_steps(self) -> None:
        if self.length == 0:
            raise EmptyEpisodeError(f"{self.path.name}: the episode has no steps", "nothing to upload or replay")

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) of array ``name``, every chunk checksum-verified (ChunkCorruptError)."""
        return self.meta(name).read_rows(start, stop, self.path.name, name)

    def rows(self, name: str, count: int, dtype: np.dtype, shape: tuple[int, ...] = ()) -> np.ndarray:
        """Rows [0, count) of a small per-step array, decoded straight from its chunk files.

        Replay reads whole actions/rewards in bulk: zarr's per-call overhead (milliseconds) would be
        a tenth of a short episode's replay time, and each chunk is plain zstd of C-order rows.
        """
        return self._read(name, 0, count).astype(dtype, copy=False).reshape(-1, *shape)

    def obs(self, leaf: str, start: int, stop: int) -> np.ndarray:
        return self._read(schema.obs_path(leaf), start, stop)

    def hashes(self, leaf: str, start: int, stop: int) -> np.ndarray:
        return self._read(schema.hash_path(leaf), start, stop)

    def final_obs(self) -> dict[str, np.ndarray]:
        return {leaf.name: self.obs(leaf.name, self.length, self.length + 1)[0] for leaf in self.obs_leaves}

    def batch(self, start: int, stop: int, with_obs: bool = True) -> StepBatch:
        stop = min(stop, self.length)
        return StepBatch(
            start=start,
            stop=stop,
            obs={leaf.name: self.obs(leaf.name, start, stop) for leaf in self.obs_leaves} if with_obs else {},
            action={leaf.name: self._read(schema.action_path(leaf.name), start, stop) for leaf in self.action_leaves},
            reward=self._read(schema.REWARD, start, stop),
            terminated=self._read(schema.TERMINATED, start, stop),
            truncated=self._read(schema.TRUNCATED, start, stop),
            timestamp=self._read(schema.TIMESTAMP, start, stop),
            info={key: self._read(schema.info_path(key), start, stop) for key in self.info_keys},
            times={name: self._read(name, start, stop) for name in self.time_keys},
        )

    def batches(self, size: int = schema.CHUNK_STEPS) -> Iterator[StepBatch]:
        """Chunk-aligned batches, so memory stays bounded whatever the episode length."""
        for start in range(0, self.length, size):
            yield self.batch(start, start + size)

    def actions(self) -> list[Any]:
        """Every step's native action, decoded (small: actions are a few bytes a step)."""
        leaves = {leaf.name: self._read(schema.action_path(leaf.name), 0, self.length) for leaf in self.action_leaves}
        desc = self.attrs.action_space
        return [decode_action(desc, {k: v[t] for k, v in leaves.items()}) for t in range(self.length)]
