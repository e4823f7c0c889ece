"""Pseudonymous participants: the id from the URL, kept only as a salted hash.

A recruiting platform sends each participant to ``/?PROLIFIC_PID=...``. The raw id must never reach
the spool, the dataset or a log: ``participant_hash`` turns it into ``HASH_CHARS`` hex characters of
HMAC-SHA256 under the study's secret salt, so the same person gets the same pseudonym across sessions
(withdrawal finds all their episodes) while nobody without the salt can link it back to the id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid

from gymrec.shared.errors import ParticipantError

HASH_CHARS = 32  # 128 bits: no two participants of any study collide
RAW_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")
HASH = re.compile(rf"^[0-9a-f]{{{HASH_CHARS}}}$")


def participant_hash(salt: str, raw_id: str) -> str:
    """The pseudonym of ``raw_id``; ParticipantError if it is not an id (empty, too long, odd characters)."""
    if not RAW_ID.match(raw_id):
        raise ParticipantError("the participant id in the link is missing or malformed",
                               "open the link your study platform gave you")
    digest = hmac.new(salt.encode("utf-8"), raw_id.encode("utf-8"), hashlib.sha256).hexdigest()
    return digest[:HASH_CHARS]


def is_participant_hash(text: str) -> bool:
    return bool(HASH.match(text))


def new_session_id() -> str:
    """One participant's visit (``study_session``): random, so it says nothing about who or when."""
    return uuid.uuid4().hex
