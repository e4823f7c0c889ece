"""The upload loop: watch the spool, claim sealed episodes, convert them, commit them in batches.

The watchdog handler only enqueues paths; the thread calling ``Uploader.run`` does the work. A rescan
at start-up and on a timer catches whatever watchdog missed (it misses events in just-created
directories) and takes over claims and batch manifests of dead uploaders. A heartbeat thread keeps
this process's claims and manifests fresh while episodes wait in a batch or a long one converts.

Episodes are converted as they are claimed and held (claimed, converted) until the batch is due:
``commit_every`` seconds after its first episode, or sooner when it holds ``batch_episodes`` episodes
or ``batch_bytes`` of data (``uploader.batching``). ``stop`` (SIGTERM / Ctrl-C) ends the loop and the
pending batch is committed before ``run`` returns, as huggingface_hub's ``CommitScheduler`` does on
exit; ``abort`` (a second Ctrl-C) cuts retry waits short and leaves the episodes queued.

A Hub that stops answering is one state (``uploader.outage``), not a retry per episode: everything
held goes back to the spool, the daemon says so once and probes with growing backoff until it
answers, then uploads the queue; ``--once`` ends with one line instead. It never exits for that.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from watchdog.events import DirCreatedEvent, DirMovedEvent, FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from gymrec.shared.errors import AuthError, CorruptEpisodeError, DatasetError, DiskFullError, GymrecError
from gymrec.shared.spool import schema, withdrawals
from gymrec.shared.spool.directory import check_spool
from gymrec.shared.spool.episode import Episode
from gymrec.uploader.batching import Batcher, Pending, RunSummary
from gymrec.uploader.claims import Claim, Claimer, episode_attrs, new_owner, owner_is_dead_here, skip_reason
from gymrec.uploader.config import UploaderConfig
from gymrec.uploader.convert import convert_episode
from gymrec.uploader.hub import HubPusher
from gymrec.uploader.local import STAGING_DIR, LocalWriter, staging_dir
from gymrec.uploader.outage import Outage
from gymrec.uploader.status import waiting_count

log = logging.getLogger(__name__)
RECOVERY_LOGGER = "gymrec.shared.spool.recovery"
STOP_POLL = 0.25  # seconds: how soon the loop sees a stop request


class _Once(logging.Filter):
    """Passes each distinct message once: the uploader runs crash recovery on every rescan (and every
    ``--once`` pass), and a directory recovery skips (an alien ``.partial``) must be said once a run,
    not once a pass."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message in self._seen:
            return False
        self._seen.add(message)
        return True

__all__ = ["RunSummary", "Uploader", "episode_attrs", "skip_reason"]


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
    def __init__(self, config: UploaderConfig, stop: threading.Event, abort: threading.Event | None = None,
                 report: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.stop = stop
        self.abort = abort or threading.Event()
        self.spool = check_spool(config.spool, create=False)
        self.claimer = Claimer(self.spool, new_owner(), config.stale_after, include_local=config.hub)
        pusher = HubPusher(config.endpoint, config.token or "", config.private, config.retry, self.abort,
                            config.force_adopt) if config.hub else None  # fmt: skip
        local = None if config.hub else LocalWriter(config.local_dir, config.force_adopt)
        self.summary = RunSummary()
        self.batcher = Batcher(config, self.spool, self.claimer, pusher, local, self.summary, self.convert,
                               report)
        queued = functools.partial(waiting_count, self.spool, config.min_active)
        self.outage = Outage(pusher, config.retry, stop, queued) if pusher is not None else None
        self._work: queue.Queue[Path | None] = queue.Queue()
        self._skipped: set[Path] = set()
        self._failed: set[str] = set()
        self._beating = threading.Event()
        self._said_once = _Once()

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        try:
            os.nice(self.config.nice)  # a recorder on this machine comes first
        except OSError:
            log.debug("cannot lower the priority")
        self.batcher.check_target()  # a bad token or a foreign dataset stops here, before anything is claimed
        recovery_log = logging.getLogger(RECOVERY_LOGGER)
        recovery_log.addFilter(self._said_once)
        try:
            return self._run()
        finally:
            recovery_log.removeFilter(self._said_once)

    def _run(self) -> RunSummary:
        self._sweep_work()
        self.batcher.apply_withdrawals()  # requests made since the last run (``uploader.withdraw``)
        heartbeat = threading.Thread(target=self._heartbeat, name="gymrec-uploader-heartbeat", daemon=True)
        heartbeat.start()
        observer = None
        try:
            self.batcher.sweep_manifests()
            if self.config.once:
                self._drain()
            else:
                observer = Observer()
                observer.schedule(_Enqueue(self.spool, self._work), str(self.spool), recursive=False)
                observer.start()
                self._loop()
            if self.hub_down():  # nothing would get through: what is held waits in the spool, unconverted
                self.batcher.release_all()
            else:
                self.batcher.flush_all()  # --once, SIGTERM, Ctrl-C: the pending batch is committed first
            return self.summary
        finally:
            self.stop.set()
            if observer is not None:
                observer.stop()
                observer.join()
            self.batcher.release_all()  # anything still held (an error above) goes back to waiting
            self._beating.set()
            heartbeat.join()

    def hub_down(self) -> bool:
        return self.outage is not None and self.outage.down is not None

    def _ride_out(self) -> bool:
        """The Hub is down: release what is held, wait until it answers (False: stopped first), rescan."""
        assert self.outage is not None
        self.batcher.release_all()
        if not self.outage.wait_until_up():
            return False
        self._rescan()
        return True

    def _loop(self) -> None:
        self._rescan()
        next_rescan = time.monotonic() + self.config.rescan_interval
        while not self.stop.is_set():
            if self.hub_down() and not self._ride_out():
                return
            # At most STOP_POLL: the signal handler only sets ``stop``, and a Ctrl-C must end the run at
            # once (a user who waits 30 s for the next rescan presses it again, and aborts).
            timeout = max(0.05, min(next_rescan - time.monotonic(), self.batcher.seconds_until_due(), STOP_POLL))
            try:
                path = self._work.get(timeout=timeout)
            except queue.Empty:
                path = None
            if path is not None:
                self._offer(path)
            if time.monotonic() >= next_rescan:
                self._rescan()
                next_rescan = time.monotonic() + self.config.rescan_interval
            if not self.hub_down():
                self.batcher.flush_due()

    def _drain(self) -> None:
        """Everything claimable now, then return (``--once``)."""
        attempted: set[Path] = set()  # a path that could not be claimed is not tried again this run
        while not self.stop.is_set() and not self.hub_down():
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
                if self.stop.is_set() or self.hub_down():
                    return
                self._offer(path)

    def _rescan(self) -> None:
        self._recover()
        self.batcher.apply_withdrawals()
        self.batcher.sweep_manifests()
        for path in self.claimer.stale_claims():
            self._process(path, takeover=True)
        for path in self.claimer.candidates():
            self._work.put(path)

    def _recover(self) -> None:
        """Seal orphaned ``.partial`` episodes whose recorder died, so they get uploaded too."""
        from gymrec.shared.spool.recovery import recover_orphans  # imports the env backends: only when needed

        try:
            for result in recover_orphans(self.spool):
                if result.sealed is not None:
                    self._work.put(result.sealed)
        except GymrecError as e:
            log.error("crash recovery failed: %s", e)

    def _heartbeat(self) -> None:
        while not self._beating.wait(self.config.heartbeat_interval):
            self.batcher.touch()

    # --- one episode ------------------------------------------------------------------------------

    def _offer(self, path: Path) -> None:
        if path in self._skipped or not path.is_dir():
            return
        try:
            reason = skip_reason(episode_attrs(path), self.config.min_active)
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
        if self.hub_down():
            return  # it stays queued; the whole queue is rescanned once the Hub answers
        claim = self.claimer.take_over(path) if takeover else self.claimer.try_claim(path)
        if claim is None:
            return
        try:
            if self.batcher.in_a_manifest(claim):
                return  # its batch was formed before (maybe by a dead uploader): that batch is resolved instead
            pending = self.convert(claim)
            if pending is not None:
                self.batcher.add(pending)
        except (AuthError, DatasetError, DiskFullError):
            raise  # nothing else would get through either: stop with one line
        except Exception as e:  # the per-episode loop: one bad episode must not stop the daemon
            log.error("uploading %s failed (%s: %s); it stays queued", claim.episode_id, type(e).__name__, e,
                      exc_info=self.config.debug)
            self._fail(claim.episode_id)

    def convert(self, claim: Claim) -> Pending | None:
        """Convert one claimed episode into its work dir; None when it was skipped, quarantined or failed.

        Anything unexpected propagates (to ``_process``'s loop) with the claim released.
        """
        work: Path | None = None
        eid = claim.episode_id
        kept = False
        try:
            episode = Episode(claim.path)
            if skip_reason(episode.attrs, self.config.min_active) is not None:
                return None
            if episode.attrs.participant is not None and episode.attrs.participant in withdrawals.withdrawn(self.spool):
                log.info("not uploading %s: its participant withdrew", eid)  # sealed after the request, say
                withdrawals.delete_episode(claim.path)
                kept = True  # deleted: nothing to release
                return None
            # Conversion decodes, and so crc-checks, every chunk; this proves they are this episode's.
            episode.verify_chunk_digests()
            work = self._work_dir(eid)
            converted = convert_episode(episode, work, self.config.convert)
            kept = True
            return Pending(claim, converted, work)
        except CorruptEpisodeError as e:
            if not claim.path.is_dir():  # not damaged: a withdrawal deleted it while it was read
                log.info("%s left the spool while it was converted", eid)
                return None
            log.error("quarantined %s: %s", eid, e)
            claim.quarantine(str(e))
            kept = True  # it moved to quarantine: nothing to release
            self.summary.quarantined.append(eid)
        except DatasetError as e:  # an episode gymrec cannot store (e.g. no 8-bit image): it stays where it is
            log.error("cannot convert %s: %s; it stays queued", eid, e)
            self._fail(eid)
        except GymrecError:  # typed errors that are OSErrors too (DiskFullError, AuthError) stop the run
            raise
        except OSError as e:
            if not claim.path.is_dir():  # as above (``shared.spool.withdrawals``)
                log.info("%s left the spool while it was converted", eid)
                return None
            if e.errno == errno.ENOSPC:  # nothing else will get through either: stop with one line
                raise DiskFullError(f"the disk holding {self._work_base()} is full while converting {eid}",
                                    "free some space; the episode stays queued and a rerun finds it") from e
            log.error("converting %s failed (%s); it stays queued", eid, e, exc_info=self.config.debug)
            self._fail(eid)
        finally:
            if not kept:
                claim.release()
                if work is not None:
                    shutil.rmtree(work, ignore_errors=True)
        return None

    def _fail(self, eid: str) -> None:
        self._failed.add(eid)
        self.summary.failed.append(eid)

    def _work_base(self) -> Path:
        return self.config.local_dir if not self.config.hub else self.spool / ".uploader-work"

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
