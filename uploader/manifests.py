"""Local batch manifests: what makes a batched upload exactly-once across crashes and uploaders.

Before a batch is committed, ``<spool>/batches/<batch_id>.<owner>.json`` (the batch id, its episode
ids, its configs and target) is written durably: temp file, fsync, rename, fsync the directory. After
the receipts are filed it is removed. A manifest left by a dead (or silent) owner is adopted with one
rename (exactly one contender wins); the adopter takes over the listed claims, asks the target in one
request whether the batch's shards are at the head (then only the receipts are missing) and otherwise
retries the same batch, whose deterministic id gives the same paths.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gymrec.shared.spool.fsio import atomic_write, durable_mkdir, fsync_dir

log = logging.getLogger(__name__)

BATCHES_AREA = "batches"
SUFFIX = ".json"


def durable_write(path: Path, data: bytes) -> None:
    """Temp file, fsync, rename, fsync the directory (``shared.spool.fsio``): after a crash it is whole or absent."""
    atomic_write(path, data)


def durable_json(path: Path, data: dict[str, Any]) -> None:
    durable_write(path, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


@dataclass(frozen=True)
class Manifest:
    batch_id: str
    episode_ids: tuple[str, ...]
    configs: tuple[str, ...]
    shard_paths: tuple[str, ...]
    target: str  # the repo id, or "local:<dir>"
    owner: str
    created_at: float

    def path(self, spool: Path) -> Path:
        return spool / BATCHES_AREA / f"{self.batch_id}.{self.owner}{SUFFIX}"

    def write(self, spool: Path) -> Path:
        folder = spool / BATCHES_AREA
        durable_mkdir(folder)
        path = self.path(spool)
        data = asdict(self)
        durable_json(path, data)
        return path

    def remove(self, spool: Path) -> None:
        try:
            self.path(spool).unlink()
        except FileNotFoundError:
            return
        fsync_dir(spool / BATCHES_AREA)

    def touch(self, spool: Path) -> bool:
        try:
            os.utime(self.path(spool))
            return True
        except FileNotFoundError:
            return False


def _read(path: Path) -> Manifest | None:
    """The manifest at ``path``; its owner is the one in the file name (an adoption renames, never rewrites)."""
    try:
        data = json.loads(path.read_text())
        return Manifest(
            batch_id=str(data["batch_id"]), episode_ids=tuple(data["episode_ids"]), configs=tuple(data["configs"]),
            shard_paths=tuple(data["shard_paths"]), target=str(data["target"]),
            owner=path.name[: -len(SUFFIX)].partition(".")[2], created_at=float(data["created_at"]),
        )  # fmt: skip
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError, OSError) as e:
        log.warning("ignoring the unreadable batch manifest %s (%s)", path, e)
        return None


def listed(spool: Path) -> list[tuple[Path, Manifest]]:
    folder = spool / BATCHES_AREA
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*" + SUFFIX)):
        manifest = _read(path)
        if manifest is not None:
            out.append((path, manifest))
    return out


def holding(spool: Path, episode_id: str) -> Manifest | None:
    """The manifest listing ``episode_id``, if any (a few files: one per batch in flight)."""
    for _, manifest in listed(spool):
        if episode_id in manifest.episode_ids:
            return manifest
    return None


def adopt(spool: Path, manifest: Manifest, owner: str) -> Manifest | None:
    """Rename a dead owner's manifest to ``owner``: exactly one contender gets it."""
    adopted = Manifest(**{**asdict(manifest), "owner": owner})
    try:
        os.rename(manifest.path(spool), adopted.path(spool))
    except FileNotFoundError:
        return None
    os.utime(adopted.path(spool))
    fsync_dir(spool / BATCHES_AREA)
    return adopted


def age(spool: Path, manifest: Manifest, now: float | None = None) -> float:
    try:
        return (time.time() if now is None else now) - manifest.path(spool).stat().st_mtime
    except FileNotFoundError:
        return 0.0
