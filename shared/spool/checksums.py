"""crc32c, the one checksum of the spool: appended to every chunk, and kept for the metadata.

Chunks carry theirs inside (zarr's ``crc32c`` codec, ``shared.spool.chunks``). JSON files cannot: zarr
rejects unknown keys in ``zarr.json``. So sealing stores them as the root group's attribute
``schema.CHECKSUMS_ATTR`` (``sealed_attributes``): the crc32c of the canonical JSON of every other
attribute, and of every array's ``zarr.json`` (shape, dtype, codecs). A separate file would do too,
but zarr 3.1 warns about every entry of a group directory that is not a Zarr node, so a sealed
episode holds none. Episodes sealed before that carry ``checksums.json`` (``check_manifest``), and
no checksum of their attributes; readers still check both forms. ``committed.json`` signs itself.

A tool that edits a sealed episode's attributes on purpose re-signs them (``resign``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import google_crc32c

from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool import schema
from gymrec.shared.spool.fsio import read_regular

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


def _canonical_attributes(attributes: dict[str, Any]) -> bytes:
    """Every attribute, the metadata checksums included, but not the attributes' own checksum."""
    sums = attributes.get(schema.CHECKSUMS_ATTR)
    rest = {**attributes, schema.CHECKSUMS_ATTR: {k: v for k, v in sums.items() if k != "attributes"}} \
        if isinstance(sums, dict) else attributes
    return json.dumps(rest, sort_keys=True, separators=(",", ":")).encode()


def chunks_digest(trailers: Iterable[bytes]) -> int:
    """One array's chunk digest: the crc32c of its chunks' own crc32c trailers, in chunk order.

    Each chunk's crc32c proves the chunk intact, not that it is this episode's: a chunk copied from
    another episode (or another position) passes its own. The digest ties the sequence to the episode
    for 4 bytes an array (~0.1 B a frame), where a crc per chunk would cost ~1.7 B a frame (P3).
    """
    return crc32c(b"".join(trailers))


def sealed_attributes(attributes: dict[str, Any], root: Path, metadata: Iterable[str],
                      digests: dict[str, int] | None = None) -> dict[str, Any]:
    """``attributes`` plus ``schema.CHECKSUMS_ATTR``: the crc32c of each listed file, each array's chunk
    digest (``chunks_digest``), and their own.

    ``attributes`` must be as they read back from JSON (lists, not tuples): the reader hashes what
    it parses.
    """
    files = {rel: crc32c((root / rel).read_bytes()) for rel in sorted(metadata)}
    sums: dict[str, Any] = {"metadata": files}
    if digests:
        sums["chunks"] = dict(sorted(digests.items()))
    return resign({**attributes, schema.CHECKSUMS_ATTR: sums})


def sealed_digests(attributes: dict[str, Any], where: str) -> dict[str, int]:
    """The chunk digests sealing kept, by array ({} for an episode sealed before them)."""
    sums = attributes.get(schema.CHECKSUMS_ATTR)
    if not isinstance(sums, dict) or "chunks" not in sums:
        return {}
    try:
        return {str(name): int(value) for name, value in dict(sums["chunks"]).items()}
    except (TypeError, ValueError) as e:
        raise CorruptEpisodeError(f"{where}/{schema.METADATA_NAME}: its chunk digests are unreadable ({e})",
                                  "the episode is damaged") from e


def resign(attributes: dict[str, Any]) -> dict[str, Any]:
    """Attributes edited on purpose (a copy under a new id, say) with their checksum brought up to date."""
    sums = attributes.get(schema.CHECKSUMS_ATTR)
    if not isinstance(sums, dict):
        return attributes
    return {**attributes, schema.CHECKSUMS_ATTR: {**sums, "attributes": crc32c(_canonical_attributes(attributes))}}


def check_sealed(root: Path, attributes: dict[str, Any]) -> None:
    """Check a sealed episode's attributes and array metadata against the checksums sealing kept."""
    sums = attributes.get(schema.CHECKSUMS_ATTR)
    if sums is None:
        check_manifest(root)  # sealed by an earlier gymrec
        return
    where = f"{root.name}/{schema.METADATA_NAME}"
    try:
        expected = int(sums["attributes"])
        files = {str(rel): int(crc) for rel, crc in dict(sums["metadata"]).items()}
    except (TypeError, KeyError, ValueError) as e:
        raise CorruptEpisodeError(f"{where}: attribute {schema.CHECKSUMS_ATTR} is unreadable ({e})",
                                  "the episode is damaged") from e
    if crc32c(_canonical_attributes(attributes)) != expected:
        raise CorruptEpisodeError(f"{where}: the attributes fail their crc32c checksum", "the episode is damaged")
    _check_files(root, files)


def check_manifest(root: Path) -> None:
    """Check the files ``checksums.json`` lists; a sealed episode from before checksums has none."""
    try:
        data = read_regular(root / schema.CHECKSUMS_NAME)
    except FileNotFoundError:
        return
    except OSError as e:
        raise CorruptEpisodeError(f"{root.name}: cannot read {schema.CHECKSUMS_NAME} ({e})") from e
    document = verified(data, f"{root.name}/{schema.CHECKSUMS_NAME}")
    _check_files(root, dict(document.get("files", {})))


def _check_files(root: Path, files: dict[str, int]) -> None:
    for rel, expected in files.items():
        if Path(rel).is_absolute() or ".." in Path(rel).parts:  # a damaged or hostile list: stay inside
            raise CorruptEpisodeError(f"{root.name}: the checksums name {rel!r}, outside the episode",
                                      "the episode is damaged")
        try:
            actual = crc32c(read_regular(root / rel))
        except OSError as e:
            raise CorruptEpisodeError(f"{root.name}: metadata file {rel} is unreadable ({e})",
                                      "the episode is damaged") from e
        if actual != expected:
            raise CorruptEpisodeError(f"{root.name}: metadata file {rel} fails its crc32c checksum",
                                      "the episode is damaged")
