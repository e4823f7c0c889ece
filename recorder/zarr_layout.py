"""Zarr v3 metadata and chunk files, written as files instead of through zarr's async store API.

zarr's public write calls cost 3-25 ms each in Python (event loop hops, metadata re-reads). A short
Atari episode lasts ~0.1 s at raw speed, so those calls alone would halve the recording rate. The
bytes here still come from zarr itself: ``GroupMetadata`` / ``ArrayV3Metadata`` serialise the
metadata and numcodecs' Zstd (what zarr's ZstdCodec uses) encodes the chunks. Only the I/O is ours:
a temp file and an atomic rename, like zarr's own LocalStore. ``tests/test_recorder.py`` checks that
zarr reads the result.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.dtype import parse_data_type
from zarr.core.group import GroupMetadata
from zarr.core.metadata.v3 import ArrayV3Metadata

from gymrec.shared import chunks, schema
from gymrec.shared.checksums import with_crc
from gymrec.shared.fsio import atomic_write

METADATA = schema.METADATA_NAME


def _compact(document: bytes) -> bytes:
    # zarr pretty-prints; on short Atari episodes the indentation alone was ~7 bytes a frame.
    return json.dumps(json.loads(document), separators=(",", ":")).encode()


def group_json(attributes: dict[str, Any]) -> bytes:
    return _compact(GroupMetadata(attributes=attributes).to_buffer_dict(default_buffer_prototype())[METADATA].to_bytes())


def array_json(length: int, row_shape: tuple[int, ...], dtype: np.dtype, chunk_steps: int) -> bytes:
    zdtype = parse_data_type(dtype, zarr_format=3)
    meta = ArrayV3Metadata(
        shape=(length, *row_shape),
        data_type=zdtype,
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": (chunk_steps, *row_shape)}},
        chunk_key_encoding={"name": "default", "configuration": {"separator": schema.CHUNK_SEPARATOR}},
        fill_value=zdtype.default_scalar(),
        codecs=[BytesCodec(), ZstdCodec(level=schema.zstd_level(int(np.prod(row_shape)) * dtype.itemsize)),
                Crc32cCodec()],
        attributes={},
        dimension_names=None,
    )
    return _compact(meta.to_buffer_dict(default_buffer_prototype())[METADATA].to_bytes())


def write_group(path: Path, attributes: dict[str, Any]) -> None:
    path.mkdir(exist_ok=True)
    atomic_write(path / METADATA, group_json(attributes), durable=False)


def write_array_metadata(path: Path, length: int, row_shape: tuple[int, ...], dtype: np.dtype, chunk_steps: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    atomic_write(path / METADATA, array_json(length, row_shape, dtype, chunk_steps), durable=False)


class ChunkEncoder:
    """Encodes one chunk exactly as zarr's ``[bytes, zstd, crc32c]`` codec pipeline would."""

    def __init__(self) -> None:
        self._codecs = {level: numcodecs.Zstd(level=level) for level in (schema.ZSTD_LEVEL, schema.SMALL_ROW_ZSTD_LEVEL)}

    def write(self, array_dir: Path, chunk_index: int, rows: np.ndarray) -> Path:
        """Write the chunk (temp name, rename) and return its path; its fsync is the caller's."""
        target = chunks.chunk_file(array_dir, chunk_index, rows.ndim, schema.CHUNK_SEPARATOR)
        # zarr's bytes codec stores little-endian; every dtype gymrec records is native little-endian here.
        codec = self._codecs[schema.zstd_level(rows[0].nbytes if len(rows) else 0)]
        atomic_write(target, with_crc(codec.encode(np.ascontiguousarray(rows))), durable=False)
        return target


def write_input_log(root: Path, log: dict[str, Any], encoder: ChunkEncoder) -> tuple[dict[str, Any], list[Path]]:
    """Store an input log's event columns as ``input/<column>`` arrays under ``root``.

    Returns the attribute that stays behind (``origin_ns``, ``kinds`` and the event count) and the
    files written, for the caller's fsync pass. As JSON in the attributes the log cost ~1 MB an
    hour of play and was parsed whole with every episode's attributes.
    """
    count = len(log["t_ns"])
    chunk_rows = max(1, min(count, schema.INPUT_CHUNK_EVENTS))
    group = root / schema.INPUT_GROUP
    write_group(group, {})
    written = [group / METADATA]
    for column, dtype in schema.INPUT_COLUMNS.items():
        values = np.asarray(log[column], dtype=np.int64)
        info = np.iinfo(dtype)
        if count and (values.min() < info.min or values.max() > info.max):
            dtype = np.dtype(np.int64)  # an unexpected code: keep it whole (readers follow the metadata)
        array_dir = root / schema.input_path(column)
        write_array_metadata(array_dir, count, (), dtype, chunk_rows)
        written.append(array_dir / METADATA)
        for index, start in enumerate(range(0, count, chunk_rows)):
            rows = np.zeros(chunk_rows, dtype)  # the edge chunk is padded, as zarr stores it
            part = values[start : start + chunk_rows]
            rows[: len(part)] = part
            written.append(encoder.write(array_dir, index, rows))
    kept = {k: v for k, v in log.items() if k not in schema.INPUT_COLUMNS}
    return {**kept, "events": count}, written
