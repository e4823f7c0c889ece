"""A participant's questionnaire answers: checked against the study's questions, stored with the session.

They go to ``<spool>/studies/<study id>/<participant>.<study_session>.json`` (never an episode directory, so the
uploader does not publish them; named by the participant so a withdrawal finds them without reading
the others); ``publish`` records whether the study said they may be published.
Only the study's question ids are kept, each answer as text of at most ``MAX_ANSWER_CHARS``; a choice
must be one of its choices and a number a finite number, or it is stored as empty.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from gymrec.shared.spool.attrs import utc_now
from gymrec.shared.spool.directory import STUDIES_AREA
from gymrec.shared.spool.fsio import atomic_write_text
from gymrec.shared.study.study import Question, Study

MAX_ANSWER_CHARS = 2000


def _answer(question: Question, raw: object) -> str:
    text = str(raw)[:MAX_ANSWER_CHARS] if isinstance(raw, str | int | float) and not isinstance(raw, bool) else ""
    if question.kind == "choice" and text not in question.choices:
        return ""
    if question.kind == "number":
        try:
            return text if math.isfinite(float(text)) else ""
        except ValueError:
            return ""
    return text


def clean_answers(study: Study, raw: dict[str, Any]) -> dict[str, str]:
    return {q.id: _answer(q, raw.get(q.id, "")) for q in study.questions}


def save_answers(spool: Path, study: Study, participant: str, session: str, raw: dict[str, Any]) -> Path:
    """Store the session's answers durably; returns the file."""
    folder = spool / STUDIES_AREA / study.id
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{participant}.{session}.json"
    doc = {"study": study.id, "participant": participant, "study_session": session, "completed_at": utc_now(),
           "publish": study.publish_answers, "answers": clean_answers(study, raw)}
    atomic_write_text(path, json.dumps(doc, indent=1, sort_keys=True))
    return path
