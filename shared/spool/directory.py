"""The spool directory: finding episodes by state, and the writer lock that tells live from orphaned.

A writer holds an exclusive ``flock`` on ``<episode>.partial/writer.lock`` for as long as it writes.
The kernel drops the lock when the process dies however it dies, so "the lock is free" is proof, not a
guess, that nobody is writing: that is what makes a ``.partial`` an orphan to recover.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from gymrec.shared.errors import AmbiguousEpisodeError, EpisodeNotFoundError, SpoolError
from gymrec.shared.spool import schema
from gymrec.shared.spool.fsio import atomic_write, read_regular

UPLOADED_AREA = "uploaded"
# Where crash recovery moves what it cannot use (damaged chunks, unreadable episodes): never deleted.
SET_ASIDE_AREA = "set-aside"
UPLOADED_LOCAL_AREA = "uploaded-local"
# Areas, besides the spool root, where sealed episodes live on (the uploader moves them there).
SEALED_AREAS = ("", UPLOADED_AREA, UPLOADED_LOCAL_AREA)
# The uploader's areas (``uploader.claims``): named here because a withdrawal (``shared.spool.withdrawals``)
# deletes a participant's episodes from every one of them.
CLAIMED_AREA = "claimed"
QUARANTINE_AREA = "quarantine"
# A study's questionnaire answers: studies/<study id>/<participant>.<study session>.json (gymrec-serve writes
# them, a withdrawal deletes them by the participant prefix, the uploader never publishes them).
STUDIES_AREA = "studies"
RECEIPT_SUFFIX = ".receipt.json"
REASON_SUFFIX = ".reason.txt"
_ID_PREFIX = re.compile(r"^[0-9a-f-]{1,36}$")


def check_spool(path: Path, create: bool) -> Path:
    """The spool as a usable directory, or a one-line SpoolError saying why not."""
    try:
        path.stat()
    except FileNotFoundError:
        pass
    except OSError as e:  # e.g. a name longer than the filesystem allows (ENAMETOOLONG), a loop of links
        raise SpoolError(f"cannot use the spool {path}: {e.strerror or e}", "pass --spool DIR with a usable path") from e
    if path.exists() and not path.is_dir():
        raise SpoolError(f"the spool {path} is a file, not a directory", "pass --spool DIR with a directory")
    if not path.exists():
        if not create:
            raise SpoolError(f"the spool {path} does not exist", "record something first, or pass --spool DIR")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpoolError(f"cannot create the spool {path}: {e.strerror}", "pass --spool DIR somewhere writable") from e
    if create and not os.access(path, os.W_OK | os.X_OK):
        raise SpoolError(f"the spool {path} is not writable", "fix its permissions or pass --spool DIR")
    return path


def is_episode_id(text: str) -> bool:
    return schema.is_uuid(text)


def sealed_episodes(spool: Path, area: str = "") -> list[Path]:
    base = spool / area if area else spool
    if not base.is_dir():
        return []
    found = [p for p in base.iterdir() if p.suffix == schema.SEALED_SUFFIX and is_episode_id(p.stem) and p.is_dir()]
    return sorted(found)


def partial_episodes(spool: Path) -> list[Path]:
    if not spool.is_dir():
        return []
    return sorted(p for p in spool.iterdir() if p.suffix == schema.PARTIAL_SUFFIX and p.is_dir())


def find_episode(spool: Path, key: str) -> Path:
    """An episode by path, id or unique id prefix, looking in every sealed area."""
    as_path = Path(key)
    if as_path.is_dir() and (as_path / schema.METADATA_NAME).exists():
        return as_path
    prefix = key.lower()
    if prefix.endswith(schema.SEALED_SUFFIX):
        prefix = prefix[: -len(schema.SEALED_SUFFIX)]
    if not _ID_PREFIX.match(prefix):
        raise EpisodeNotFoundError(
            f"{key!r} is neither an episode directory nor an episode id",
            "pass a path, or an id or id prefix from 'gymrec-uploader status'",
        )
    matches = [p for area in SEALED_AREAS for p in sealed_episodes(spool, area) if p.stem.startswith(prefix)]
    if not matches:
        raise EpisodeNotFoundError(f"no episode in {spool} matches {key!r}", "check the id, or pass --spool DIR")
    if len(matches) > 1:
        names = ", ".join(p.stem[:13] for p in matches[:4]) + (", ..." if len(matches) > 4 else "")
        raise AmbiguousEpisodeError(f"{key!r} matches {len(matches)} episodes ({names})", "give more of the id")
    return matches[0]


@dataclass
class WriterLock:
    """A non-blocking flock on one episode's ``writer.lock``.

    Writers hold it *shared*: the game process and its writer process both do, so the episode is an
    orphan only once both are gone. Recovery takes it *exclusive*, which also keeps two recoverers
    apart.
    """

    path: Path
    shared: bool = False
    fd: int = -1

    def try_acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if self.shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> WriterLock:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def write_owners(directory: Path, pids: list[int]) -> None:
    """Record which processes write this episode (the recorder and its writer process).

    The lock alone is not enough: the writer process takes it with its first chunk job, and a
    stopped (SIGSTOP) writer still has jobs to run. An episode with a live owner is never an orphan.
    """
    import psutil  # ~12 ms to import: only writers and the orphan check need it

    owners = []
    for pid in pids:
        try:
            owners.append({"pid": pid, "started": psutil.Process(pid).create_time()})
        except psutil.Error:
            continue
    atomic_write(directory / schema.OWNERS_NAME, json.dumps({"host": socket.gethostname(), "owners": owners}).encode(),
                 durable=False)


def owner_alive(partial: Path) -> bool:
    """Whether a process recorded as writing ``partial`` still exists here (running or stopped)."""
    try:
        doc = json.loads(read_regular(partial / schema.OWNERS_NAME))
        if doc.get("host") != socket.gethostname():
            return False  # another machine's writer: only its lock can tell
        owners = [(int(o["pid"]), float(o["started"])) for o in doc.get("owners", [])]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False  # no (readable) record: the lock decides
    import psutil  # see write_owners

    for pid, started in owners:
        try:
            process = psutil.Process(pid)
            if abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            continue
    return False


def orphaned(partial: Path) -> WriterLock | None:
    """The held lock if ``partial`` has no live writer (the caller then owns it), else None."""
    if owner_alive(partial):
        return None
    lock = WriterLock(partial / schema.LOCK_NAME)
    try:
        if not lock.try_acquire():
            return None
    except FileNotFoundError:
        return None  # sealed (renamed) between listing and locking
    if owner_alive(partial):  # it started between the two looks
        lock.release()
        return None
    return lock
