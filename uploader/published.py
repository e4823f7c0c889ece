"""Exactly once per episode id: what a target's index already lists, read once per batch.

A batch id is deterministic in its episode ids, so a batch that differs by one episode (a spool
restored from a backup, two machines holding copies of one spool) has new shard paths and would
publish its old episodes again. So before a batch is published, under the local dataset's lock or
at the Hub head the commit is parented on, every episode id is looked up in the target's index:

- not listed: published;
- listed with the same content (``fingerprint``): filed as uploaded, not published again;
- listed with other content: quarantined with a reason naming the index shard.

Index shard paths are deterministic in what they hold, so a shard read once never needs reading
again: ``IndexCache`` keeps every shard's (id, fingerprint) pairs, and a batch costs one listing of
the index folder plus the shards added since the last batch, not a read that grows with the repo.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gymrec.shared.dataset import layout

log = logging.getLogger(__name__)

CONTENT_DIGEST_COLUMN = "content_digest"
_COLUMNS = ("episode_id", layout.INDEX_ATTRS_COLUMN, layout.INDEX_FINAL_HASH_COLUMN, layout.INDEX_ROW_COUNT_COLUMN)


def _sha(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()


def legacy_fingerprint(attributes_json: str, final_hash: int, rows: int) -> str:
    """What every index row ever written can tell about its episode's content (rows from before
    ``content_digest`` are compared on this)."""
    return _sha({"attributes": attributes_json, "final": int(final_hash), "rows": int(rows)})


def content_digest(attributes_json: str, final_hash: int, rows: int, chunk_digests: dict[str, int]) -> str:
    """The episode's content: its attributes, final frame, length and every array's sealed chunk digest."""
    return _sha({"legacy": legacy_fingerprint(attributes_json, final_hash, rows), "chunks": chunk_digests})


@dataclass(frozen=True)
class Listed:
    """One index row of an episode id: where, and what content."""

    index_file: str
    legacy: str
    digest: str | None  # None in index shards written before the column

    def same_as(self, legacy: str, digest: str) -> bool:
        return self.digest == digest if self.digest is not None else self.legacy == legacy


def rows_of(index_file: str, blob: bytes) -> list[tuple[str, Listed]]:
    parquet = pq.ParquetFile(io.BytesIO(blob))
    names = set(parquet.schema_arrow.names)
    columns = [c for c in (*_COLUMNS, CONTENT_DIGEST_COLUMN) if c in names]
    out = []
    for row in parquet.read(columns=columns).to_pylist():
        legacy = legacy_fingerprint(row[layout.INDEX_ATTRS_COLUMN], row[layout.INDEX_FINAL_HASH_COLUMN],
                                    row[layout.INDEX_ROW_COUNT_COLUMN])  # fmt: skip
        out.append((str(row["episode_id"]), Listed(index_file, legacy, row.get(CONTENT_DIGEST_COLUMN))))
    return out


@dataclass
class IndexCache:
    """Every index shard read so far (path -> its rows); a target's shard path never changes content."""

    shards: dict[str, list[tuple[str, Listed]]] = field(default_factory=dict)

    def listed(self, paths: Iterable[str], read: Callable[[str], bytes]) -> dict[str, list[Listed]]:
        """{episode id: its rows} over the index shards ``paths`` (those not seen before are read)."""
        out: dict[str, list[Listed]] = {}
        for path in sorted(paths):
            if not layout.is_index_path(path):
                continue
            rows = self.shards.get(path)
            if rows is None:
                try:
                    rows = rows_of(path, read(path))
                except (pa.ArrowException, OSError, KeyError, ValueError) as e:  # its episodes are unreadable anyway
                    log.warning("cannot read the index shard %s (%s); its episodes are not checked", path, e)
                    rows = []
                self.shards[path] = rows
            for eid, entry in rows:
                out.setdefault(eid, []).append(entry)
        return out


@dataclass(frozen=True)
class Verdict:
    """How a batch's episodes stand against the target's index."""

    same: dict[str, str]  # id -> the index shard already listing it with this content
    clash: dict[str, str]  # id -> why it is quarantined (listed with other content)

    @property
    def found(self) -> set[str]:
        return set(self.same) | set(self.clash)


def judge(candidates: dict[str, tuple[str, str]], listed: dict[str, list[Listed]], target: str) -> Verdict:
    """``candidates``: id -> (legacy fingerprint, content digest) of the batch's episodes."""
    same: dict[str, str] = {}
    clash: dict[str, str] = {}
    for eid, (legacy, digest) in sorted(candidates.items()):
        rows = listed.get(eid)
        if not rows:
            continue
        if all(r.same_as(legacy, digest) for r in rows):
            same[eid] = rows[0].index_file
        else:
            other = next(r for r in rows if not r.same_as(legacy, digest))
            clash[eid] = (f"episode {eid} is already published at {target} with other content ({other.index_file}); "
                          "this copy was not published")  # fmt: skip
    return Verdict(same, clash)
