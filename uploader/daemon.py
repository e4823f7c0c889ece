"""The upload loop: watch the spool, claim sealed episodes, convert, push, file the receipt.

The watchdog handler only enqueues paths; the thread calling ``Uploader.run`` does the work. A rescan
at start-up and on a timer catches whatever watchdog missed (it misses events in just-created
directories) and takes over claims of dead uploaders. A heartbeat thread keeps this process's claim
fresh while a long episode converts or uploads. ``stop`` (set on SIGTERM / Ctrl-C) is checked between
episodes and during retry waits: a commit in flight finishes, nothing else starts.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from watchdog.events import DirCreatedEvent, DirMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gymrec.shared import schema
from gymrec.shared.episode import Episode
from gymrec.shared.errors import AuthError, CorruptEpisodeError, DiskFullError, GymrecError, HubUnavailableError
from gymrec.shared.spool import UPLOADED_AREA, UPLOADED_LOCAL_AREA, check_spool
from gymrec.uploader import layout
from gymrec.uploader.claims import Claim, Claimer, new_owner, owner_is_dead_here
from gymrec.uploader.config import UploaderConfig
from gymrec.uploader.convert import convert_episode
from gymrec.uploader.hub import HubPusher, Receipt
from gymrec.uploader.local import STAGING_DIR, LocalWriter, staging_dir

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    uploaded: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def episode_attrs(path: Path) -> dict[str, Any]:
    """An episode's attributes without opening it as Zarr (cheap enough for every rescan)."""
    return dict(json.loads((path / schema.METADATA_NAME).read_text()).get("attributes", {}))


def skip_reason(attrs: dict[str, Any]) -> str | None:
    """Why a sealed episode is never uploaded (it stays where it is), or None."""
    if attrs.get("end_reason") == schema.EndReason.DISCARDED:
        return "discarded"
    if int(attrs.get("length", 0) or 0) == 0:
        return "empty"
    return None


class _Enqueue(FileSystemEventHandler):
    """Only enqueues: a sealed episode appears by a rename to ``<id>.zarr`` in the spool root."""

    def __init__(self, spool: Path, work: queue.Queue[Path | None]) -> None:
        self._spool = spool
        self._work = work

    def _offer(self, raw: str | bytes) -> None:
        path = Path(os.fsdecode(raw))
        if path.suffix == schema.SEALED_SUFFIX and path.parent == self._spool:
            self._work.put(path)

    def on_moved(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirMovedEvent):
            self._offer(event.dest_path)

    def on_created(self, event: FileSystemEvent) -> None:
        if isinstance(event, DirCreatedEvent):
            self._offer(event.src_path)


class Uploader:
    def __init__(self, config: UploaderConfig, stop: threading.Event) -> None:
        self.config = config
        self.stop = stop
        self.spool = check_spool(config.spool, create=False)
        self.claimer = Claimer(self.spool, new_owner(), config.stale_after, include_local=config.hub)
        self.pusher = HubPusher(config.endpoint, config.token or "", config.private, config.retry, stop) if config.hub else None
        self.local = None if config.hub else LocalWriter(config.local_dir)
        self.summary = RunSummary()
        self._work: queue.Queue[Path | None] = queue.Queue()
        self._skipped: set[Path] = set()
        self._failed: set[str] = set()
        self._current: Claim | None = None
        self._current_lock = threading.Lock()

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        try:
            os.nice(self.config.nice)  # a recorder on this machine comes first
        except OSError:
            log.debug("cannot lower the priority")
        if self.pusher is not None:
            self.pusher.whoami()  # a bad token stops here, before anything is claimed
        self._sweep_work()
        heartbeat = threading.Thread(target=self._heartbeat, name="gymrec-uploader-heartbeat", daemon=True)
        heartbeat.start()
        observer = None
        try:
            if self.config.once:
                self._drain()
                return self.summary
            observer = Observer()
            observer.schedule(_Enqueue(self.spool, self._work), str(self.spool), recursive=False)
            observer.start()
            self._rescan()
            while not self.stop.is_set():
                try:
                    path = self._work.get(timeout=self.config.rescan_interval)
                except queue.Empty:
                    self._rescan()
                    continue
                if path is not None:
                    self._offer(path)
            return self.summary
        finally:
            self.stop.set()
            if observer is not None:
                observer.stop()
                observer.join()
            heartbeat.join()

    def _drain(self) -> None:
        """Everything claimable now, then return (``--once``)."""
        attempted: set[Path] = set()  # a path that could not be claimed is not tried again this run
        while not self.stop.is_set():
            self._recover()
            batch = [p for p in self.claimer.candidates() if p not in self._skipped and p not in attempted
                     and p.name.split(".")[0] not in self._failed]  # fmt: skip
            stale = [p for p in self.claimer.stale_claims() if p not in attempted]
            if not batch and not stale:
                return
            attempted.update(batch + stale)
            for path in stale:
                self._process(path, takeover=True)
            for path in batch:
                if self.stop.is_set():
                    return
                self._offer(path)

    def _rescan(self) -> None:
        self._recover()
        for path in self.claimer.stale_claims():
            self._process(path, takeover=True)
        for path in self.claimer.candidates():
            self._work.put(path)

    def _recover(self) -> None:
        """Seal orphaned ``.partial`` episodes whose recorder died, so they get uploaded too."""
        from gymrec.recorder.recovery import recover_orphans  # imports the env backends: only when needed

        try:
            for result in recover_orphans(self.spool):
                if result.sealed is not None:
                    self._work.put(result.sealed)
        except GymrecError as e:
            log.error("crash recovery failed: %s", e)

    def _heartbeat(self) -> None:
        while not self.stop.wait(self.config.heartbeat_interval):
            with self._current_lock:
                claim = self._current
            if claim is not None and not claim.touch():
                log.warning("%s was taken over by another uploader", claim.episode_id)

    # --- one episode ------------------------------------------------------------------------------

    def _offer(self, path: Path) -> None:
        if path in self._skipped or not path.is_dir():
            return
        try:
            reason = skip_reason(episode_attrs(path))
        except FileNotFoundError:
            return  # claimed by someone else meanwhile
        except (ValueError, OSError) as e:
            reason = None
            log.debug("unreadable attributes in %s (%s): it will be quarantined", path.name, e)
        if reason is not None:
            log.info("not uploading %s: %s", path.name, reason)
            self._skipped.add(path)
            return
        self._process(path, takeover=False)

    def _process(self, path: Path, takeover: bool) -> None:
        claim = self.claimer.take_over(path) if takeover else self.claimer.try_claim(path)
        if claim is None:
            return
        with self._current_lock:
            self._current = claim
        work: Path | None = None
        eid = claim.episode_id
        try:
            episode = Episode(claim.path)
            if skip_reason(episode.attrs.as_dict()) is not None:
                claim.release()
                return
            work = self._work_dir(eid)
            converted = convert_episode(episode, work, self.config.convert)
            receipt = self._publish(converted)
            area = UPLOADED_AREA if self.pusher is not None else UPLOADED_LOCAL_AREA
            claim.finish(self._receipt(receipt, episode), area, self.config.delete_after_upload and self.pusher is not None)
            (self.summary.already if receipt.already_present else self.summary.uploaded).append(eid)
        except AuthError:
            claim.release()
            raise
        except CorruptEpisodeError as e:
            log.error("quarantined %s: %s", eid, e)
            claim.quarantine(str(e))
            self.summary.quarantined.append(eid)
        except HubUnavailableError as e:
            log.error("%s stays queued: %s", eid, e)
            claim.release()
            self._fail(eid)
        except OSError as e:
            claim.release()
            if e.errno == errno.ENOSPC:  # nothing else will get through either: stop with one line
                raise DiskFullError(f"the disk is full while uploading {eid}",
                                    "free some space; the episode stays queued and a rerun finds it") from e
            log.error("uploading %s failed (%s); it stays queued", eid, e, exc_info=self.config.debug)
            self._fail(eid)
        except Exception as e:  # the per-episode loop: one bad episode must not stop the daemon
            log.error("uploading %s failed (%s: %s); it stays queued", eid, type(e).__name__, e,
                      exc_info=self.config.debug)
            claim.release()
            self._fail(eid)
        finally:
            with self._current_lock:
                self._current = None
            if work is not None:
                shutil.rmtree(work, ignore_errors=True)

    def _fail(self, eid: str) -> None:
        self._failed.add(eid)
        self.summary.failed.append(eid)

    def _work_base(self) -> Path:
        return self.local.local_dir if self.local is not None else self.spool / ".uploader-work"

    def _work_root(self) -> Path:
        return self._work_base() / STAGING_DIR

    def _work_dir(self, eid: str) -> Path:
        # We hold the claim, so any other work dir of this episode belongs to an owner who lost it.
        root = self._work_root()
        for stale in root.glob(f"{eid}.*") if root.is_dir() else ():
            shutil.rmtree(stale, ignore_errors=True)
        return staging_dir(self._work_base(), f"{eid}.{self.claimer.owner}")

    def _sweep_work(self) -> None:
        """Remove conversion leftovers of uploaders that died (derived files only: never episodes)."""
        root = self._work_root()
        if not root.is_dir():
            return
        now = time.time()
        for work in root.iterdir():
            owner = work.name.partition(".")[2]
            if owner == self.claimer.owner:
                continue
            try:
                stale = owner_is_dead_here(owner) or now - work.stat().st_mtime > self.config.stale_after
            except FileNotFoundError:
                continue
            if stale:
                shutil.rmtree(work, ignore_errors=True)

    def _publish(self, converted: Any) -> Receipt:
        if self.local is not None:
            return self.local.add(converted)
        assert self.pusher is not None
        repo_id = self.config.repo_id or f"{self.pusher.whoami()}/gymrec-{converted.slug}"
        return self.pusher.push(converted, repo_id)

    def _receipt(self, receipt: Receipt, episode: Episode) -> dict[str, Any]:
        return receipt.as_dict() | {
            "episode_id": episode.id,
            "env_id": episode.attrs.env_id,
            "env_slug": layout.env_slug(episode.attrs.env_id),
            "length": episode.length,
            "endpoint": self.config.endpoint if self.pusher is not None else None,
        }
