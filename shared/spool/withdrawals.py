"""A participant's withdrawal from a study: recorded in the spool first, then their episodes deleted.

    <spool>/withdrawals/<participant>.json              the request (kept: it is what stops later uploads)
    <spool>/withdrawals/applied/<participant>.<t>.json  the uploader removed their rows from target t

Order, so that a crash at any instant loses nothing and a rerun (or the uploader) finishes the work:

1. the request is written durably (temp name, fsync, link, fsync the folder) before anything is deleted;
2. the targets named by the receipts of the participant's uploaded episodes are added to it (after the
   deletion nothing in the spool says where their rows went);
3. each of their episodes is renamed to ``.<id>.withdrawn`` beside itself (fsync the folder), then removed;
   a crash mid-removal leaves that hidden name, which every sweep removes;
4. the request is marked swept.

Deleted: sealed episodes in every area (waiting, claimed, uploaded, quarantined) and orphaned ``.partial``
ones (their writer is gone: ``directory.orphaned`` takes the lock first). Never deleted: an episode a live
recorder is writing (reported as ``live``; the uploader deletes it once sealed), anything whose attributes
cannot be read (it cannot be told whose it is), and anything not named like an episode.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymrec.shared.errors import WithdrawalError
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import utc_now
from gymrec.shared.spool.directory import (
    CLAIMED_AREA,
    QUARANTINE_AREA,
    REASON_SUFFIX,
    RECEIPT_SUFFIX,
    STUDIES_AREA,
    UPLOADED_AREA,
    UPLOADED_LOCAL_AREA,
    WriterLock,
    orphaned,
)
from gymrec.shared.spool.episode import episode_attributes
from gymrec.shared.spool.fsio import atomic_write, durable_mkdir, fsync_dir, read_regular

log = logging.getLogger(__name__)

WITHDRAWALS_AREA = "withdrawals"
APPLIED_DIR = "applied"
KIND = "gymrec-withdrawal"
LOCAL_TARGET = "local:"  # a local dataset's target name: "local:<dir>" (the uploader's batching names it so)
_PARTICIPANT = re.compile(r"^[0-9a-f]{16,128}$")
_WITHDRAWN = ".withdrawn"
# Where a participant's episodes can be, besides the spool root.
_AREAS = ("", UPLOADED_AREA, UPLOADED_LOCAL_AREA, CLAIMED_AREA, QUARANTINE_AREA)


@dataclass(frozen=True)
class WithdrawalReceipt:
    participant: str
    request: Path
    deleted: tuple[str, ...]  # episode ids deleted by this call
    live: tuple[str, ...]  # still being written by a live recorder: deleted once sealed (uploader or a rerun)
    targets: tuple[str, ...]  # datasets their uploaded rows went to (repo ids, "local:<dir>")


def check_participant(text: str) -> str:
    """The participant's salted hash: 16 to 128 lowercase hex digits, nothing else (it names a file)."""
    if not _PARTICIPANT.match(text):
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise WithdrawalError(f"{shown!r} is not a participant hash",
                              "pass the participant's salted hash as the index shows it (16-128 hex digits)")  # fmt: skip
    return text


def request_path(spool: Path, participant: str) -> Path:
    return spool / WITHDRAWALS_AREA / f"{participant}.json"


def _read_request(path: Path, participant: str) -> dict[str, Any] | None:
    """Our request at ``path``, None when there is none; anything else there is refused, never overwritten."""
    try:
        doc = json.loads(read_regular(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise WithdrawalError(f"{path} exists and is not a gymrec withdrawal request ({getattr(e, 'strerror', None) or e})",
                              "move that file away and run the withdrawal again; nothing was deleted") from e  # fmt: skip
    if not (isinstance(doc, dict) and doc.get("kind") == KIND and doc.get("participant") == participant):
        raise WithdrawalError(f"{path} exists and is not a gymrec withdrawal request for this participant",
                              "move that file away and run the withdrawal again; nothing was deleted")  # fmt: skip
    return doc


def _create(path: Path, data: bytes) -> None:
    """Write ``path`` durably, never over an existing file: a link fails where a rename would replace."""
    tmp = path.with_name(f".{path.name}.tmp")
    atomic_write(tmp, data)
    try:
        os.link(tmp, path)
    except FileExistsError as e:
        raise WithdrawalError(f"{path} appeared while the withdrawal was being recorded",
                              "check what wrote it, move it away and run again; nothing was deleted") from e
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def _folder(spool: Path) -> Path:
    folder = spool / WITHDRAWALS_AREA
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise WithdrawalError(f"{folder} is not a directory", "move it away and run again; nothing was deleted")
    durable_mkdir(folder)
    return folder


def request_withdrawal(spool_root: Path, participant: str) -> WithdrawalReceipt:
    """Record the withdrawal durably, then delete the participant's episodes from the spool (idempotent)."""
    participant = check_participant(participant)
    _folder(spool_root)
    path = request_path(spool_root, participant)
    doc = _read_request(path, participant)
    if doc is None:
        doc = {"kind": KIND, "participant": participant, "requested_at": utc_now(), "episodes": [], "targets": [],
               "swept_at": None}  # fmt: skip
        _create(path, _dumps(doc))
    return sweep(spool_root, participant, doc)


def _dumps(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def sweep(spool: Path, participant: str, doc: dict[str, Any]) -> WithdrawalReceipt:
    """Steps 2-4 of the module's order for a recorded request ``doc``; safe to repeat."""
    path = request_path(spool, participant)
    found, locks, live = _episodes_of(spool, participant)
    try:
        targets = sorted(set(doc["targets"]) | {t for p in found if (t := _receipt_target(p)) is not None})
        ids = sorted({schema.id_from_name(p.name) or p.name for p in found})
        doc = doc | {"targets": targets, "episodes": sorted(set(doc["episodes"]) | set(ids))}
        atomic_write(path, _dumps(doc))  # the targets are durable before the receipts naming them go
        deleted = [eid for p in found if (eid := delete_episode(p)) is not None]
        _delete_answers(spool, participant)
    finally:
        for lock in locks:
            lock.release()
    atomic_write(path, _dumps(doc | {"swept_at": utc_now() if not live else None}))
    if deleted or live:
        log.info("withdrew %s: %d episode(s) deleted, %d still being recorded", participant[:12], len(deleted), len(live))
    return WithdrawalReceipt(participant, path, tuple(sorted(deleted)), tuple(live), tuple(targets))


def _delete_answers(spool: Path, participant: str) -> None:
    """The participant's questionnaire answers (gymrec-serve names them ``<participant>.<session>.json``)."""
    for study in sorted((spool / STUDIES_AREA).glob("*")):
        gone = False
        for path in sorted(study.glob(f"{participant}.*.json")):
            if stat.S_ISREG(path.lstat().st_mode):  # a symlink or folder under that name is not ours to follow
                path.unlink()
                gone = True
        if gone:
            fsync_dir(study)


def _is_leftover(name: str) -> bool:
    """``.<uuid>.withdrawn``: what a crash in ``delete_episode`` left (only ever this exact form is removed)."""
    return name.startswith(".") and name.endswith(_WITHDRAWN) and schema.is_uuid(name[1 : -len(_WITHDRAWN)])


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(path.lstat().st_mode)  # a symlink named like an episode is not followed
    except OSError:
        return False


def _episodes_of(spool: Path, participant: str) -> tuple[list[Path], list[WriterLock], list[str]]:
    """(the participant's episodes to delete, the writer locks held on its orphaned ``.partial`` ones
    so that crash recovery does not start on them meanwhile, ids of those a live recorder still writes).
    Reads each spool episode's attributes once: the cost grows with the spool; a withdrawal is rare."""
    found: list[Path] = []
    locks: list[WriterLock] = []
    live: list[str] = []
    for area in _AREAS:
        folder = spool / area if area else spool
        if not _is_dir(folder):
            continue
        for entry in sorted(folder.iterdir()):
            eid = schema.id_from_name(entry.name)
            if _is_leftover(entry.name) and _is_dir(entry):
                shutil.rmtree(entry)  # a crash mid-removal left it: our own name, already withdrawn
                fsync_dir(folder)
                continue
            if eid is None or entry.suffix not in (schema.SEALED_SUFFIX, schema.PARTIAL_SUFFIX) or not _is_dir(entry):
                continue
            if entry.suffix == schema.PARTIAL_SUFFIX and area:
                continue
            try:
                if episode_attributes(entry).participant != participant:
                    continue
            except (OSError, ValueError):
                continue  # unreadable (or gone meanwhile): whose it is cannot be told
            if entry.suffix == schema.PARTIAL_SUFFIX:
                lock = orphaned(entry)
                if lock is None:
                    live.append(eid)
                    continue
                locks.append(lock)
            found.append(entry)
    return found, locks, live


def _receipt_target(episode: Path) -> str | None:
    """Where an uploaded episode's rows went, from its receipt beside it (None: not uploaded)."""
    eid = schema.id_from_name(episode.name)
    receipt = episode.parent / f"{eid}{RECEIPT_SUFFIX}"
    try:
        doc = json.loads(read_regular(receipt))
    except (OSError, ValueError):
        return None
    if doc.get("local_dir"):
        return LOCAL_TARGET + str(doc["local_dir"])
    repo = doc.get("repo")
    return str(repo) if isinstance(repo, str) and repo != "local" else None


def delete_episode(episode: Path) -> str | None:
    """Rename ``episode`` to its hidden withdrawn name, then remove it and its receipt or reason; the id,
    or None when it moved meanwhile (an uploader claimed it: the uploader drops it before uploading)."""
    eid = schema.id_from_name(episode.name)
    doomed = episode.with_name(f".{eid}{_WITHDRAWN}")
    if _is_dir(doomed):
        shutil.rmtree(doomed)
    try:
        os.rename(episode, doomed)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTEMPTY, errno.EEXIST):
            return None
        raise
    fsync_dir(episode.parent)
    shutil.rmtree(doomed)
    for suffix in (RECEIPT_SUFFIX, REASON_SUFFIX):
        (episode.parent / f"{eid}{suffix}").unlink(missing_ok=True)
    fsync_dir(episode.parent)
    return eid


# --- what the uploader reads -------------------------------------------------------------------


def withdrawn(spool: Path) -> frozenset[str]:
    """Every participant with a request: their episodes are never uploaded. From the file names alone
    (one listing, cheap enough per episode): a stray name only keeps episodes back, never lets one out."""
    folder = spool / WITHDRAWALS_AREA
    if not _is_dir(folder):
        return frozenset()
    return frozenset(p.stem for p in folder.iterdir() if p.suffix == ".json" and _PARTICIPANT.match(p.stem))


def requests(spool: Path) -> list[dict[str, Any]]:
    """Every readable request (a foreign or damaged file is skipped with a warning: the uploader goes on)."""
    out = []
    for participant in sorted(withdrawn(spool)):
        try:
            doc = _read_request(request_path(spool, participant), participant)
        except WithdrawalError as e:
            log.warning("%s", e)
            continue
        if doc is not None:
            out.append(doc)
    return out


def _applied_path(spool: Path, participant: str, target: str) -> Path:
    digest = hashlib.sha256(target.encode()).hexdigest()[:16]
    return spool / WITHDRAWALS_AREA / APPLIED_DIR / f"{participant}.{digest}.json"


def is_applied(spool: Path, participant: str, target: str) -> bool:
    return _applied_path(spool, participant, target).is_file()


def mark_applied(spool: Path, participant: str, target: str, details: dict[str, Any]) -> None:
    """The uploader removed the participant's rows from ``target``: durably, so it is not redone."""
    path = _applied_path(spool, participant, target)
    durable_mkdir(path.parent)
    atomic_write(path, _dumps({"kind": KIND, "participant": participant, "target": target, "applied_at": utc_now()} | details))
