"""One stored chunk file: where it lies, how it is encoded, and how a read proves it intact.

gymrec writes Zarr v3 arrays itself (``shared.spool.zarr_layout``) and reads its own chunks back in bulk
(``shared.spool.episode``), so both sides share this module. Each array's ``zarr.json`` says how its
chunks are stored; the reader follows that document, not the episode's schema version, exactly as
zarr does:

- schema_version 1: codecs ``[bytes, zstd]``, chunk keys ``c/<i>/0/0...`` (a directory per chunk).
- schema_version 2: codecs ``[bytes, zstd, crc32c]``, chunk keys ``c.<i>.0.0...`` (one flat file).
  The crc32c (Castagnoli, 4 bytes little-endian, appended to the zstd frame) is zarr's own codec,
  so plain ``zarr.open`` verifies it too. Flat keys cut the directories a chunk creates from
  ``ndim`` to 0, and with them the directory fsyncs a durable chunk costs (``shared.spool.chunk_store``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gymrec.shared.errors import ChunkCorruptError, CorruptEpisodeError
from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import CRC_SIZE, chunks_digest, crc_ok
from gymrec.shared.spool.fsio import open_regular, read_regular
from gymrec.shared.zstd_frames import ZstdFrames

CRC32C_CODEC = "crc32c"


def chunk_file(array_dir: Path, index: int, ndim: int, separator: str) -> Path:
    """Where Zarr v3's default chunk key encoding keeps chunk ``index`` along axis 0."""
    parts = ["c", str(index), *(["0"] * (ndim - 1))]
    return array_dir / separator.join(parts) if separator == "." else array_dir.joinpath(*parts)


@dataclass(frozen=True)
class ArrayMeta:
    """What a reader needs of one array's ``zarr.json``: dtype, row shape, chunking, codecs."""

    path: Path
    dtype: np.dtype
    shape: tuple[int, ...]
    chunk_rows: int
    separator: str
    checksum: bool
    # Chunk i's file is ``_key_head + str(i) + _key_tail``: built as a string, ~1 us, where pathlib's
    # joins cost ~6 us a chunk, and replay --all touches ~150 chunk files an episode (5 % of its
    # non-emulator time, measured on Breakout).
    _key_head: str = field(init=False, repr=False, compare=False)
    _key_tail: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        head = os.path.join(self.path, "c") + self.separator
        object.__setattr__(self, "_key_head", head)
        object.__setattr__(self, "_key_tail", (self.separator + "0") * (len(self.shape) - 1))

    @classmethod
    def read(cls, path: Path, where: str, name: str) -> ArrayMeta:
        try:
            doc: dict[str, Any] = json.loads(read_regular(path / schema.METADATA_NAME))
            codecs = [c["name"] if isinstance(c, dict) else str(c) for c in doc["codecs"]]
            encoding = doc.get("chunk_key_encoding", {}).get("configuration", {})
            return cls(
                path=path,
                dtype=np.dtype(doc["data_type"]),
                shape=tuple(int(n) for n in doc["shape"]),
                chunk_rows=int(doc["chunk_grid"]["configuration"]["chunk_shape"][0]),
                separator=str(encoding.get("separator", "/")),
                checksum=CRC32C_CODEC in codecs,
            )
        except FileNotFoundError as e:
            raise CorruptEpisodeError(f"{where}: array {name!r} is missing", "the episode is damaged") from e
        except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
            raise CorruptEpisodeError(f"{where}: the metadata of array {name!r} is unreadable ({e})",
                                      "the episode is damaged") from e

    @property
    def row_shape(self) -> tuple[int, ...]:
        return self.shape[1:]

    def chunk_file(self, index: int) -> Path:
        return Path(self._key(index))

    @property
    def _max_bytes(self) -> int:
        """No chunk file can be larger (zstd never grows data by half): a bigger one is not a chunk."""
        return 2 * self.chunk_rows * math.prod(self.shape[1:]) * self.dtype.itemsize + (1 << 16)

    def _key(self, index: int) -> str:
        return f"{self._key_head}{index}{self._key_tail}"

    def has_chunk(self, index: int) -> bool:
        return os.path.isfile(self._key(index))

    def decode(self, data: bytes, index: int, where: str, name: str, frames: ZstdFrames | None = None) -> np.ndarray:
        """One chunk's rows; ChunkCorruptError when its checksum or its decoding fails."""
        rows = self._span(index)
        if self.checksum:
            if not crc_ok(data):
                raise ChunkCorruptError(where, name, index, rows, "fails its crc32c checksum")
            data = data[:-CRC_SIZE]
        frames = frames or ZstdFrames()
        size = self.chunk_rows * math.prod(self.row_shape) * self.dtype.itemsize
        errors: tuple[type[Exception], ...] = (RuntimeError, ValueError, TypeError, *frames.errors)
        try:
            raw = frames.decompress(data, size)
            return np.frombuffer(raw, dtype=self.dtype).reshape(self.chunk_rows, *self.row_shape)
        except errors as e:
            raise ChunkCorruptError(where, name, index, rows, f"cannot be decoded ({e})") from e

    def _span(self, index: int) -> tuple[int, int]:
        return index * self.chunk_rows, (index + 1) * self.chunk_rows

    def _bytes(self, index: int, where: str, name: str) -> bytes:
        try:
            with open_regular(self._key(index), self._max_bytes) as f:  # unbuffered: ~1.4 us less a chunk
                return f.readall()
        except FileNotFoundError as e:
            raise ChunkCorruptError(where, name, index, self._span(index), "is missing") from e
        except OSError as e:
            raise ChunkCorruptError(where, name, index, self._span(index), f"is unreadable ({e})") from e

    def check_chunk(self, index: int, where: str, name: str) -> bytes:
        """The chunk is present and, where it carries one, matches its checksum (no decoding); its
        stored crc32c (b"" without one)."""
        data = self._bytes(index, where, name)
        if self.checksum and not crc_ok(data):
            raise ChunkCorruptError(where, name, index, self._span(index), "fails its crc32c checksum")
        return data[-CRC_SIZE:] if self.checksum else b""

    def trailer(self, index: int, where: str, name: str) -> bytes:
        """The chunk's stored crc32c, its last 4 bytes, read without the rest (b"" without one)."""
        if not self.checksum:
            return b""
        try:
            with open_regular(self._key(index)) as f:
                f.seek(-CRC_SIZE, os.SEEK_END)
                return f.read(CRC_SIZE)
        except FileNotFoundError as e:
            raise ChunkCorruptError(where, name, index, self._span(index), "is missing") from e
        except OSError as e:  # shorter than a crc, or unreadable
            raise ChunkCorruptError(where, name, index, self._span(index), f"is unreadable ({e})") from e

    def read_chunk(self, index: int, where: str, name: str, frames: ZstdFrames | None = None) -> np.ndarray:
        return self.decode(self._bytes(index, where, name), index, where, name, frames)

    def read_rows(self, start: int, stop: int, where: str, name: str) -> np.ndarray:
        """Rows [start, stop), decoded chunk by chunk from the files (no zarr call, no fill values)."""
        if stop <= start:
            return np.empty((0, *self.row_shape), self.dtype)
        first, last = start // self.chunk_rows, (stop - 1) // self.chunk_rows
        frames = ZstdFrames()
        parts = [self.read_chunk(i, where, name, frames) for i in range(first, last + 1)]
        joined = parts[0] if len(parts) == 1 else np.concatenate(parts)
        offset = first * self.chunk_rows
        return joined[start - offset : stop - offset]


def stored_digest(root: Path, name: str) -> int:
    """Array ``name``'s chunk digest (``shared.spool.checksums.chunks_digest``) as its chunk files on disk
    give it: a 4-byte read a chunk. Sealing stores it; a tool that edits chunks on purpose re-stores it."""
    meta = ArrayMeta.read(root / name, root.name, name)
    count = -(-meta.shape[0] // meta.chunk_rows)
    return chunks_digest(meta.trailer(i, root.name, name) for i in range(count))
