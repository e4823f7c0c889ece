"""Batches of converted episodes: when they are due, how they are committed, and their manifests.

A batch is keyed by its target (a repo id, or the local dataset). It is due ``commit_every``
seconds after its first episode arrived, or as soon as it holds ``batch_episodes`` episodes,
``batch_bytes`` of converted data, or ``MAX_CONFIGS`` configs (each config adds three files to the
commit, and a commit must stay under the Hub's 100 files).

Exactly once: the manifest (``uploader.manifests``) is written before the commit and removed after
the receipts. An episode that a manifest lists is only ever published as part of that manifest's
batch: whoever claims it (this process after a failed push, or another after a crash) resolves the
manifest instead, with one question to the target ("are its shards at the head?"), then either files
the receipts or retries the very same batch.
"""

from __future__ import annotations

import errno
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymrec.shared.dataset import layout
from gymrec.shared.errors import (
    AlreadyPublishedError,
    DatasetError,
    DiskFullError,
    GymrecError,
    HubUnavailableError,
)
from gymrec.shared.spool import schema, withdrawals
from gymrec.shared.spool.directory import UPLOADED_AREA, UPLOADED_LOCAL_AREA
from gymrec.uploader import manifests, withdraw
from gymrec.uploader.claims import RECEIPT_SUFFIX, Claim, Claimer, episode_attrs, owner_is_dead_here
from gymrec.uploader.config import UploaderConfig
from gymrec.uploader.convert import Converted
from gymrec.uploader.hub import HubPusher, Receipt
from gymrec.uploader.local import LocalWriter, staging_dir
from gymrec.uploader.manifests import Manifest
from gymrec.uploader.shards import Batch, batch_id, build_batch

log = logging.getLogger(__name__)

MAX_CONFIGS = 24  # 3 files each + info.json + card + previews < the Hub's 100 files per commit
LOCAL_PREFIX = withdrawals.LOCAL_TARGET  # a local dataset as a target: "local:<dir>"


@dataclass
class RunSummary:
    uploaded: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    commits: int = 0
    withdrawn: int = 0  # episodes removed from targets by withdrawals (``uploader.withdraw``)
    last_failure: str = ""  # why the last batch stayed queued: --once ends on it, in its one line


@dataclass(frozen=True)
class Pending:
    """A claimed, converted episode waiting for its batch."""

    claim: Claim
    converted: Converted
    work: Path


def _sealed_monotonic(sealed_at: float | None) -> float:
    """An episode's seal on the monotonic clock (now, when the seal time is unknown)."""
    now = time.monotonic()
    if sealed_at is None:
        return now
    return now - max(time.time() - sealed_at, 0.0)


class Batcher:
    def __init__(self, config: UploaderConfig, spool: Path, claimer: Claimer, pusher: HubPusher | None,
                 local: LocalWriter | None, summary: RunSummary, convert: Callable[[Claim], Pending | None],
                 report: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.report = report  # the daemon's one line per commit (the CLI's output); None: silent
        self.spool = spool
        self.claimer = claimer
        self.pusher = pusher
        self.local = local
        self.summary = summary
        self.convert = convert
        self._pending: dict[str, list[Pending]] = {}
        self._since: dict[str, float] = {}
        self._started = time.monotonic()
        self._last_flush: dict[str, float] = {}
        self._in_flight: list[Manifest] = []
        self._lock = threading.Lock()  # the heartbeat thread reads the claims and manifests
        self.withdrawals = withdraw.Applier(spool, config.convert, local, pusher, spool / ".uploader-work", claimer.owner)

    # --- targets --------------------------------------------------------------------------------

    def check_target(self) -> None:
        if self.pusher is not None:
            self.pusher.check_account()
            if self.config.repo_id is not None and self.pusher.down is None:
                self.pusher.check_repo(self.config.repo_id)
        elif self.local is not None:
            self.local.repair_card()

    def _target(self, converted: Converted) -> str:
        if self.pusher is None:
            assert self.local is not None
            return LOCAL_PREFIX + str(self.local.local_dir)
        return self.config.repo_id or f"{self.pusher.whoami()}/gymrec-{converted.slug}"

    def _publish(self, target: str, batch: Batch) -> Receipt:
        if target.startswith(LOCAL_PREFIX):
            assert self.local is not None
            return self.local.add(batch)
        assert self.pusher is not None
        return self.pusher.push(batch, target)

    def _landed(self, manifest: Manifest) -> Receipt | None:
        """The one question crash recovery asks: are the batch's shards at the target's head?"""
        paths = list(manifest.shard_paths)
        if manifest.target.startswith(LOCAL_PREFIX):
            assert self.local is not None
            there = self.local.batch_landed(paths)
            return Receipt("local", None, paths, manifest.batch_id, True, str(self.local.local_dir)) if there else None
        assert self.pusher is not None
        head = self.pusher.batch_landed(manifest.target, paths)
        return Receipt(manifest.target, head, paths, manifest.batch_id, already_present=True) if head else None

    # --- withdrawals ---------------------------------------------------------------------------

    def apply_withdrawals(self, targets: tuple[str, ...] = ()) -> None:
        """Apply pending withdrawal requests to ``targets`` and this uploader's own target (at start-up,
        every rescan and before every commit); a Hub that does not answer leaves them pending."""
        own = [LOCAL_PREFIX + str(self.local.local_dir)] if self.local is not None else []
        own += [self.config.repo_id] if self.pusher is not None and self.config.repo_id else []
        try:
            self.summary.withdrawn += self.withdrawals.apply([*own, *targets])
        except HubUnavailableError as e:
            log.warning("withdrawals stay pending: %s", e)

    def _without_withdrawn(self, items: list[Pending]) -> list[Pending]:
        """``items`` less the episodes of withdrawn participants, which are deleted (claim and work dir)."""
        gone = withdrawals.withdrawn(self.spool)
        kept = [p for p in items if p.converted.attrs.participant is None or p.converted.attrs.participant not in gone]
        for p in items:
            if p not in kept:
                log.info("not uploading %s: its participant withdrew", p.converted.episode_id)
                withdrawals.delete_episode(p.claim.path)
                shutil.rmtree(p.work, ignore_errors=True)
        return kept

    # --- pending episodes -----------------------------------------------------------------------

    def add(self, pending: Pending) -> None:
        target = self._target(pending.converted)
        with self._lock:
            self._pending.setdefault(target, []).append(pending)
            # The wait for a commit starts at the seal, not when conversion ended (P7: start-up and
            # conversion otherwise add ~5 s on top of --commit-every), but never before this target's
            # last commit or the run's start, so a backlog still fills whole batches (P8).
            since = max(_sealed_monotonic(pending.converted.sealed_at), self._last_flush.get(target, self._started))
            self._since[target] = min(self._since.get(target, since), since)
        if self._full(target):
            self.flush(target)

    def _full(self, target: str) -> bool:
        items = self._pending.get(target, [])
        return (len(items) >= self.config.batch_episodes
                or sum(p.converted.size for p in items) >= self.config.batch_bytes
                or len({p.converted.slug for p in items}) >= MAX_CONFIGS)  # fmt: skip

    def seconds_until_due(self) -> float:
        if not self._since:
            return float("inf")
        return min(self._since.values()) + self.config.commit_every - time.monotonic()

    def flush_due(self) -> None:
        now = time.monotonic()
        for target, since in list(self._since.items()):
            if now - since >= self.config.commit_every:
                self.flush(target)

    def flush_all(self) -> None:
        for target in list(self._pending):
            self.flush(target)

    def flush(self, target: str) -> None:
        with self._lock:
            items = self._pending.pop(target, [])
            self._since.pop(target, None)
            self._last_flush[target] = time.monotonic()
        if items:
            self._commit(target, items)

    def touch(self) -> None:
        """The heartbeat: keep every held claim and manifest fresh."""
        with self._lock:
            claims = [p.claim for items in self._pending.values() for p in items]
            flying = list(self._in_flight)
        for claim in claims:
            if not claim.touch():
                log.warning("%s was taken over by another uploader", claim.episode_id)
        for manifest in flying:
            manifest.touch(self.spool)

    def release_all(self) -> None:
        with self._lock:
            items = [p for group in self._pending.values() for p in group]
            self._pending.clear()
            self._since.clear()
        for p in items:
            p.claim.release()
            shutil.rmtree(p.work, ignore_errors=True)

    # --- committing -----------------------------------------------------------------------------

    def _commit(self, target: str, items: list[Pending]) -> None:
        items = self._without_withdrawn(items)
        if not items:
            return
        self.apply_withdrawals((target,))  # a request is applied at the target's next commit, before it
        ids = [p.converted.episode_id for p in items]
        bid = batch_id(ids)
        base = self.local.local_dir if self.local is not None else self.spool / ".uploader-work"
        root = staging_dir(base, f"batch-{bid}.{self.claimer.owner}")
        manifest: Manifest | None = None
        settled = False  # every claim was finished, released or left to its new owner
        rest: list[Pending] = []  # what is left to publish once the target listed some of the batch
        try:
            batch = build_batch([p.converted for p in items], root, self.config.convert)
            manifest = Manifest(bid, batch.episode_ids, tuple(batch.parts), tuple(batch.shard_paths), target,
                                self.claimer.owner, time.time())  # fmt: skip
            manifest.write(self.spool)  # durable BEFORE the commit
            with self._lock:
                self._in_flight.append(manifest)
            lost = [p for p in items if not p.claim.touch()]
            if lost:  # taken over while we converted: that uploader publishes them; the rest waits
                manifest.remove(self.spool)
                log.warning("%d episode(s) were taken over before batch %s was committed", len(lost), bid[:8])
                for p in items:
                    if p not in lost:
                        p.claim.release()
                settled = True
                return
            try:
                receipt = self._publish(target, batch)
            except AlreadyPublishedError as e:  # nothing was written: file or quarantine those, then the rest
                manifest.remove(self.spool)
                rest = self._settle_published(target, items, e)
                settled = True
                return
            self._finish([p.claim for p in items], receipt, already=receipt.already_present)
            settled = True
            if not receipt.already_present:
                self.summary.commits += 1
                self._say_commit(target, items)
            manifest.remove(self.spool)
        except HubUnavailableError as e:  # the manifest stays: whoever retries asks whether the batch landed
            if not e.transient:  # transient: the Hub is down, which uploader.outage says once; nothing failed
                if not self.config.once:  # --once says it in its closing line instead: one line, not two
                    log.error("%d episode(s) stay queued: %s", len(items), e)
                self.summary.failed += ids
                self.summary.last_failure = e.message
        except DatasetError:  # a target that is not ours (or another format): nothing was written there
            if manifest is not None:
                manifest.remove(self.spool)
            raise
        except GymrecError:  # AuthError and DiskFullError are OSErrors too: they stop the run, not one batch
            raise
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise DiskFullError(f"the disk holding {base} is full while building a batch",
                                    "free some space; the episodes stay queued and a rerun finds them") from e
            log.error("committing %d episode(s) failed (%s); they stay queued", len(items), e, exc_info=self.config.debug)
            self.summary.failed += ids
        finally:  # AuthError, DatasetError and anything unexpected propagate with the claims released
            if not settled:
                self._release(items)
            with self._lock:
                if manifest in self._in_flight:
                    self._in_flight.remove(manifest)
            shutil.rmtree(root, ignore_errors=True)
            for p in items:
                if p not in rest:
                    shutil.rmtree(p.work, ignore_errors=True)
            if rest:  # a new batch (a new id) of the episodes the target does not list yet
                self._commit(target, rest)

    def _settle_published(self, target: str, items: list[Pending], e: AlreadyPublishedError) -> list[Pending]:
        """Exactly once per episode id: an id the target lists with this content is filed as uploaded
        (its receipt names the index shard), one listed with other content is quarantined; returns the rest."""
        where = target[len(LOCAL_PREFIX):] if target.startswith(LOCAL_PREFIX) else target
        rest = []
        for p in items:
            eid = p.converted.episode_id
            if eid in e.same:
                log.info("%s is already published at %s (%s): not publishing it again", eid, where, e.same[eid])
                receipt = Receipt("local" if self.pusher is None else target, None, [e.same[eid]], "", True,
                                  where if self.pusher is None else None)  # fmt: skip
                self._finish([p.claim], receipt, already=True)
            elif eid in e.clash:
                log.error("quarantined %s: %s", eid, e.clash[eid])
                p.claim.quarantine(e.clash[eid])
                self.summary.quarantined.append(eid)
            else:
                rest.append(p)
        return rest

    def _say_commit(self, target: str, items: list[Pending]) -> None:
        if self.report is None:
            return
        where = target[len(LOCAL_PREFIX):] if target.startswith(LOCAL_PREFIX) else target
        steps = sum(p.converted.length for p in items)
        self.report(f"committed {len(items)} episode(s), {steps} steps to {where}")

    def _release(self, items: list[Pending]) -> None:
        for p in items:
            p.claim.release()

    def _finish(self, claims: list[Claim], receipt: Receipt, already: bool) -> None:
        hub = self.pusher is not None
        area = UPLOADED_AREA if hub else UPLOADED_LOCAL_AREA
        for claim in claims:
            claim.finish(self._receipt(receipt, claim), area, self.config.delete_after_upload and hub)
            (self.summary.already if already else self.summary.uploaded).append(claim.episode_id)

    def _receipt(self, receipt: Receipt, claim: Claim) -> dict[str, Any]:
        attrs = episode_attrs(claim.path)
        return receipt.as_dict() | {
            "episode_id": claim.episode_id,
            "env_id": attrs.env_id,
            "env_slug": layout.env_slug(attrs.env_id),
            "length": attrs.length or 0,
            "endpoint": self.config.endpoint if self.pusher is not None else None,
        }

    # --- manifests left by failed pushes and dead uploaders --------------------------------------

    def _stale(self, manifest: Manifest) -> bool:
        return owner_is_dead_here(manifest.owner) or manifests.age(self.spool, manifest) > self.config.stale_after

    def in_a_manifest(self, claim: Claim) -> bool:
        """True when ``claim`` belongs to a manifest's batch (which is then resolved, or left to its live owner)."""
        manifest = manifests.holding(self.spool, claim.episode_id)
        if manifest is None:
            return False
        if manifest.owner != self.claimer.owner:
            adopted = manifests.adopt(self.spool, manifest, self.claimer.owner) if self._stale(manifest) else None
            if adopted is None:  # a live uploader's batch in flight, or another adopter won
                claim.release()
                return True
            log.warning("adopted batch %s of %s (its uploader stopped)", manifest.batch_id[:8], manifest.owner)
            manifest = adopted
        self._resolve(manifest, claim)
        return True

    def _claim_member(self, episode_id: str) -> Claim | None:
        name = schema.sealed_name(episode_id)
        places = [self.spool / name, self.spool / UPLOADED_LOCAL_AREA / name]
        folder = self.spool / "claimed"
        if folder.is_dir():
            places += [p for p in folder.glob(f"{episode_id}.*{schema.SEALED_SUFFIX}")
                       if p.name.split(".")[1] != self.claimer.owner]  # fmt: skip
        for path in places:
            if path.is_dir():
                claim = self.claimer.try_claim(path)
                if claim is not None:
                    return claim
        return None

    def _resolve(self, manifest: Manifest, first: Claim) -> None:
        claims = {first.episode_id: first}
        for eid in manifest.episode_ids:
            if eid not in claims:
                claim = self._claim_member(eid)
                if claim is not None:
                    claims[eid] = claim
        landed: Receipt | None = None
        asked = False
        try:
            landed = self._landed(manifest)
            asked = True
        except HubUnavailableError as e:
            if not e.transient:  # transient: the Hub is down, which uploader.outage says once
                log.error("cannot check batch %s: %s; its episodes stay queued", manifest.batch_id[:8], e)
                self.summary.failed += list(claims)
        finally:
            if not asked:
                for claim in claims.values():
                    claim.release()
        if not asked:
            return
        if landed is not None:
            log.info("batch %s is already at %s: filing its receipts", manifest.batch_id[:8], manifest.target)
            self._finish(list(claims.values()), landed, already=True)
            manifest.remove(self.spool)
            return
        items = [p for p in (self.convert(c) for c in claims.values()) if p is not None]
        if batch_id([p.converted.episode_id for p in items]) != manifest.batch_id:
            manifest.remove(self.spool)  # it never landed (just checked), and the batch changed
        if items:
            self._commit(manifest.target, items)

    def sweep_manifests(self) -> None:
        """Remove stale manifests whose every episode already has its receipt."""
        area = UPLOADED_AREA if self.pusher is not None else UPLOADED_LOCAL_AREA
        for _path, manifest in manifests.listed(self.spool):
            if manifest.owner == self.claimer.owner or not self._stale(manifest):
                continue
            if all((self.spool / area / (eid + RECEIPT_SUFFIX)).is_file() for eid in manifest.episode_ids):
                manifest.remove(self.spool)
