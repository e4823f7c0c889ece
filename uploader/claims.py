"""Exactly-once claiming of sealed episodes among any number of uploaders sharing one spool.

Every state change is one ``rename``, which succeeds for exactly one contender on a local or a
network filesystem: the loser's source is gone (ENOENT) and it moves on. There is no check-then-act.

    <spool>/<id>.zarr                          waiting
    <spool>/uploaded-local/<id>.zarr           written to a local dataset; waiting for a Hub push
    <spool>/claimed/<id>.<owner>.zarr          claimed; its mtime is the owner's heartbeat
    <spool>/uploaded/<id>.zarr + .receipt.json uploaded (the directory is gone with --delete-after-upload)
    <spool>/quarantine/<id>.zarr + .reason.txt unreadable; kept for a human

A claim whose heartbeat is older than ``stale_after`` (or whose owner is a dead process on this
host) is taken over by renaming it again to the new owner's name. If the old owner was only slow,
both may try to push the same episode: ``uploader.hub`` makes that harmless (deterministic paths,
and a commit only when the episode's metadata is not yet at the head it commits on).
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.directory import (  # noqa: F401  (re-exported: the uploader's areas)
    CLAIMED_AREA,
    QUARANTINE_AREA,
    REASON_SUFFIX,
    RECEIPT_SUFFIX,
    UPLOADED_LOCAL_AREA,
    is_episode_id,
)
from gymrec.shared.spool.episode import episode_attributes
from gymrec.shared.spool.fsio import durable_mkdir, fsync_dir
from gymrec.uploader.manifests import durable_json, durable_write

log = logging.getLogger(__name__)

_OWNER = re.compile(r"^(?P<host>[A-Za-z0-9-]+)_p(?P<pid>\d+)_[0-9a-f]+$")


def new_owner() -> str:
    """``<host>_p<pid>_<random>``: unique per process, and says which host and pid hold a claim."""
    host = re.sub(r"[^A-Za-z0-9-]+", "-", socket.gethostname()).strip("-") or "host"
    return f"{host}_p{os.getpid()}_{secrets.token_hex(3)}"


def owner_is_dead_here(owner: str) -> bool:
    match = _OWNER.match(owner)
    if match is None or match["host"] != new_owner().split("_p")[0]:
        return False  # another machine: only the heartbeat can tell
    return not psutil.pid_exists(int(match["pid"]))


@dataclass
class Claim:
    """One episode this process holds; every method is a rename (or a utime) on it."""

    episode_id: str
    path: Path
    spool: Path

    def touch(self) -> bool:
        """Refresh the heartbeat; False when the claim was taken over (this process lost it)."""
        try:
            os.utime(self.path)
            return True
        except FileNotFoundError:
            return False

    def release(self) -> bool:
        """Back to waiting, for a later attempt; False if it was not ours any more."""
        return _rename(self.path, self.spool / schema.sealed_name(self.episode_id))

    def finish(self, receipt: dict[str, Any], area: str, delete: bool) -> Path:
        """Write the receipt, then move the episode to ``area`` (or delete it). Returns the receipt."""
        target_dir = self.spool / area
        durable_mkdir(target_dir)
        receipt_path = target_dir / (self.episode_id + RECEIPT_SUFFIX)
        durable_json(receipt_path, receipt)
        if delete:
            doomed = self.path.with_name(f".{self.episode_id}.deleting")
            if _rename(self.path, doomed):
                shutil.rmtree(doomed, ignore_errors=True)
        else:
            _rename(self.path, target_dir / schema.sealed_name(self.episode_id))
        return receipt_path

    def quarantine(self, reason: str) -> Path:
        target_dir = self.spool / QUARANTINE_AREA
        durable_mkdir(target_dir)
        # The reason names the episode, never the claim file: its path and name carry this host and pid.
        reason = reason.replace(str(self.path), schema.sealed_name(self.episode_id))
        reason = reason.replace(self.path.name, schema.sealed_name(self.episode_id))
        durable_write(target_dir / (self.episode_id + REASON_SUFFIX), (reason.rstrip() + "\n").encode())
        target = target_dir / schema.sealed_name(self.episode_id)
        _rename(self.path, target)
        return target


def _rename(source: Path, target: Path) -> bool:
    """Move an episode between spool areas, durably: a power cut must not undo a claim or a finish.

    Both directories are fsynced (``shared.spool.fsio``): without it a cut after the rename can leave the
    episode in neither area, or back in the queue after its receipt was written.
    """
    try:
        os.rename(source, target)
        fsync_dir(target.parent)
        if source.parent != target.parent:
            fsync_dir(source.parent)
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        if target.exists():  # ENOTEMPTY/EEXIST: someone else put it there first
            log.warning("cannot move %s to %s: %s", source.name, target, e.strerror)
            return False
        raise


class Claimer:
    """Claims, takes over and lists episodes for one uploader process (``owner``)."""

    def __init__(self, spool: Path, owner: str, stale_after: float, include_local: bool) -> None:
        self.spool = spool
        self.owner = owner
        self.stale_after = stale_after
        self.include_local = include_local
        self.claimed_dir = spool / CLAIMED_AREA
        self._warned: set[Path] = set()  # odd entries already named (a rescan must not repeat it)

    def _claim_path(self, episode_id: str) -> Path:
        return self.claimed_dir / f"{episode_id}.{self.owner}{schema.SEALED_SUFFIX}"

    def candidates(self) -> list[Path]:
        """Sealed episodes nobody holds, oldest first (root first, then the local-only ones)."""
        areas = [self.spool] + ([self.spool / UPLOADED_LOCAL_AREA] if self.include_local else [])
        found: list[Path] = []
        for area in areas:
            if area.is_dir():
                named = [p for p in area.iterdir() if p.suffix == schema.SEALED_SUFFIX and is_episode_id(p.stem)]
                found += sorted((p for p in named if self._is_episode_dir(p)), key=_mtime)
        return found

    def _is_episode_dir(self, path: Path) -> bool:
        """A real directory: a symlink (a loop, say), FIFO or file named like an episode is left alone, said once."""
        try:
            if stat.S_ISDIR(path.lstat().st_mode):
                return True
            why = "a symlink" if path.is_symlink() else "not a directory"
        except OSError as e:
            why = e.strerror or str(e)
        if path not in self._warned:
            self._warned.add(path)
            log.warning("skipping %s: %s, not an episode", path, why)
        return False

    def try_claim(self, path: Path) -> Claim | None:
        """Rename ``path`` into ``claimed/``: exactly one contender wins."""
        episode_id = path.name.split(".")[0]
        durable_mkdir(self.claimed_dir)  # the claim rename below must not vanish with its folder
        target = self._claim_path(episode_id)
        if not _rename(path, target):
            return None
        claim = Claim(episode_id, target, self.spool)
        claim.touch()  # the heartbeat starts now, not at the episode's last write
        return claim

    def stale_claims(self, now: float | None = None) -> list[Path]:
        """Claims held by dead uploaders: a dead pid on this host, or no heartbeat for ``stale_after``."""
        if not self.claimed_dir.is_dir():
            return []
        now = time.time() if now is None else now
        stale = []
        for path in self.claimed_dir.iterdir():
            parts = path.name.split(".")
            if len(parts) != 3 or path.suffix != schema.SEALED_SUFFIX or parts[1] == self.owner:
                continue
            age = now - _mtime(path)
            if age > self.stale_after or owner_is_dead_here(parts[1]):
                stale.append(path)
        return stale

    def take_over(self, path: Path) -> Claim | None:
        claim = self.try_claim(path)
        if claim is not None:
            log.warning("took over %s from %s (its uploader stopped)", claim.episode_id, path.name.split(".")[1])
        return claim


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:  # gone meanwhile
        return float("inf")


def episode_attrs(path: Path) -> EpisodeAttrs:
    """An episode's attributes without opening it as Zarr (cheap enough for every rescan); a ValueError
    (CorruptEpisodeError) or OSError when they are unreadable."""
    return episode_attributes(path)


LOW_ACTIVITY = "low-activity"


def skip_reason(attrs: EpisodeAttrs, min_active: float = 0.0) -> str | None:
    """Why a sealed episode is never uploaded (it stays where it is), or None.

    ``min_active`` (--min-active): human episodes whose ``active_fraction`` is below it are skipped;
    episodes without the field (agents, older recordings) have nothing to judge and go up.
    """
    if attrs.end_reason == schema.EndReason.DISCARDED:
        return "discarded"
    if not attrs.length:
        return "empty"
    active = attrs.active_fraction
    if min_active > 0 and active is not None and active < min_active:
        return LOW_ACTIVITY
    return None
