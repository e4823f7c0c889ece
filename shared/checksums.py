"""crc32c, the one checksum of the spool: appended to every chunk, and kept for the metadata files.

Chunks carry theirs inside (zarr's ``crc32c`` codec, ``shared.chunks``). JSON files cannot: zarr
rejects unknown keys in ``zarr.json``. So sealing writes ``checksums.json``, the crc32c of the
episode's metadata files (every array's and sub-group's ``zarr.json``) plus one
of its own listing, and readers of a sealed episode check them; ``committed.json`` also carries its
own. The episode's attributes (its top ``zarr.json``) are left out on purpose: copies and tools
rewrite them, so they are validated field by field (``shared.attrs``) instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import google_crc32c

from gymrec.shared import schema
from gymrec.shared.errors import CorruptEpisodeError

CRC_SIZE = 4
CRC_KEY = "crc32c"


def crc32c(data: bytes) -> int:
    return int(google_crc32c.value(data))


def with_crc(data: bytes) -> bytes:
    """``data`` followed by its crc32c, as zarr's ``crc32c`` codec stores it (4 bytes, little-endian)."""
    return data + crc32c(data).to_bytes(CRC_SIZE, "little")


def crc_ok(data: bytes) -> bool:
    return len(data) >= CRC_SIZE and crc32c(data[:-CRC_SIZE]) == int.from_bytes(data[-CRC_SIZE:], "little")


def _canonical(document: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in document.items() if k != CRC_KEY}, sort_keys=True, separators=(",", ":")).encode()


def sign(document: dict[str, Any]) -> bytes:
    """A JSON document carrying the crc32c of its own other keys."""
    return json.dumps({**document, CRC_KEY: crc32c(_canonical(document))}).encode()


def verified(data: bytes, where: str) -> dict[str, Any]:
    """The document ``sign`` wrote (or an unsigned one from before checksums), else CorruptEpisodeError."""
    try:
        document = json.loads(data)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptEpisodeError(f"{where} is not valid JSON ({e})", "the episode is damaged") from e
    if CRC_KEY in document and document[CRC_KEY] != crc32c(_canonical(document)):
        raise CorruptEpisodeError(f"{where} fails its crc32c checksum", "the episode is damaged")
    return document


def write_manifest(root: Path, relative: Iterable[str]) -> Path:
    """``checksums.json``: the crc32c of each listed file under ``root`` (sealing writes it)."""
    files = {rel: crc32c((root / rel).read_bytes()) for rel in sorted(relative)}
    path = root / schema.CHECKSUMS_NAME
    path.write_bytes(sign({"files": files}))
    return path


def check_manifest(root: Path) -> None:
    """Check the files ``checksums.json`` lists; a sealed episode from before checksums has none."""
    try:
        data = (root / schema.CHECKSUMS_NAME).read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        raise CorruptEpisodeError(f"{root.name}: cannot read {schema.CHECKSUMS_NAME} ({e})") from e
    document = verified(data, f"{root.name}/{schema.CHECKSUMS_NAME}")
    for rel, expected in dict(document.get("files", {})).items():
        try:
            actual = crc32c((root / rel).read_bytes())
        except OSError as e:
            raise CorruptEpisodeError(f"{root.name}: metadata file {rel} is unreadable ({e})",
                                      "the episode is damaged") from e
        if actual != expected:
            raise CorruptEpisodeError(f"{root.name}: metadata file {rel} fails its crc32c checksum",
                                      "the episode is damaged")
