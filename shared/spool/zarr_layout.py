"""Zarr v3 metadata and chunk files, written as files instead of through zarr's async store API.

zarr's public write calls cost 3-25 ms each in Python (event loop hops, metadata re-reads). A short
Atari episode lasts ~0.1 s at raw speed, so those calls alone would halve the recording rate.
numcodecs' Zstd (what zarr's ZstdCodec uses) encodes the chunks; the group and numeric-array
metadata are spelled out exactly as zarr 3.1's ``GroupMetadata`` / ``ArrayV3Metadata`` write them
(importing zarr cost each recorder process ~120-150 ms of start-up), and zarr itself builds any
other dtype's. The I/O is a temp file and an atomic rename, like zarr's own LocalStore.
``tests/test_recorder.py`` checks both documents against zarr's and that zarr reads the result.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from gymrec.shared.spool import chunks, schema
from gymrec.shared.spool.checksums import with_crc
from gymrec.shared.spool.fsio import atomic_write

METADATA = schema.METADATA_NAME


def _compact(document: bytes) -> bytes:
    # zarr pretty-prints; on short Atari episodes the indentation alone was ~7 bytes a frame.
    return json.dumps(json.loads(document), separators=(",", ":")).encode()


def group_json(attributes: dict[str, Any]) -> bytes:
    """What zarr 3.1's ``GroupMetadata(attributes=...)`` serialises, compacted, without importing zarr:
    the recorder writes every episode's group before its first step, and importing zarr for it cost
    ~120 ms of each ``gymrec-play`` start-up (measured). tests/test_recorder.py compares it with zarr's."""
    return json.dumps({"attributes": attributes, "zarr_format": 3, "node_type": "group"},
                      separators=(",", ":")).encode()


def array_json(length: int, row_shape: tuple[int, ...], dtype: np.dtype, chunk_steps: int) -> bytes:
    # zarr builds the document once per row shape and dtype; only the length differs between calls.
    # Building it every time cost ~0.5 ms a call, 18 calls an episode: ~0.4 s of writer CPU per
    # 40 Breakout episodes (P1), more than the frame hashes.
    document = json.loads(_array_template(row_shape, np.dtype(dtype).str, chunk_steps))
    document["shape"] = [int(length), *row_shape]
    return json.dumps(document, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=64)
def _array_template(row_shape: tuple[int, ...], dtype_str: str, chunk_steps: int) -> str:
    """The array metadata for shape (0, *row_shape), as zarr 3.1 writes it.

    Numeric dtypes (all gymrec records) are spelled out here: importing zarr cost the writer process
    ~0.15 s of CPU at start-up (measured), while the game waited for its first chunks. Anything else
    goes through zarr. tests/test_recorder.py checks the two agree for every numeric dtype.
    """
    dtype = np.dtype(dtype_str)
    if dtype.kind not in "biuf" or dtype.byteorder == ">":
        return zarr_array_template(row_shape, dtype_str, chunk_steps)
    codec: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        codec["configuration"] = {"endian": "little"}
    level = schema.zstd_level(int(np.prod(row_shape)) * dtype.itemsize)
    document = {
        "shape": [0, *row_shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk_steps, *row_shape]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": schema.CHUNK_SEPARATOR}},
        "fill_value": False if dtype.kind == "b" else 0.0 if dtype.kind == "f" else 0,
        "codecs": [codec, {"name": "zstd", "configuration": {"level": level, "checksum": False}}, {"name": "crc32c"}],
        "attributes": {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    }
    return json.dumps(document, separators=(",", ":"))


def zarr_array_template(row_shape: tuple[int, ...], dtype_str: str, chunk_steps: int) -> str:
    """zarr's own array metadata for shape (0, *row_shape) (zarr is imported here, on first use only)."""
    from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.dtype import parse_data_type
    from zarr.core.metadata.v3 import ArrayV3Metadata

    dtype = np.dtype(dtype_str)
    length = 0
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
    return _compact(meta.to_buffer_dict(default_buffer_prototype())[METADATA].to_bytes()).decode()


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
