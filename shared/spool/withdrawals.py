"""STUB (gymrec-serve's branch): the withdraw helper's real module replaces this file at merge.

``request_withdrawal`` records a participant's withdrawal durably; the real one also deletes their
episodes from the spool and, through the uploader, from the dataset at its next commit.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gymrec.shared.errors import SpoolError
from gymrec.shared.spool.attrs import utc_now
from gymrec.shared.spool.fsio import atomic_write_text

WITHDRAWALS_AREA = "withdrawals"
_PARTICIPANT = re.compile(r"^[0-9a-f]{16,128}$")


def request_withdrawal(spool_root: Path, participant_hash: str) -> Path:
    """Write ``withdrawals/<hash>.json`` (durably) and return its path."""
    if not _PARTICIPANT.match(participant_hash):
        raise SpoolError(f"{participant_hash!r} is not a participant hash", "pass the hash as the index shows it")
    folder = spool_root / WITHDRAWALS_AREA
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{participant_hash}.json"
    if not path.exists():
        atomic_write_text(path, json.dumps({"participant": participant_hash, "requested_at": utc_now()}))
    return path
