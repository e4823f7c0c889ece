"""``gymrec-uploader status``: how many episodes (and frames) are in each state of the spool."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import UPLOADED_AREA, is_episode_id, partial_episodes
from gymrec.shared.spool.episode import read_committed
from gymrec.uploader.claims import (
    CLAIMED_AREA,
    LOW_ACTIVITY,
    QUARANTINE_AREA,
    RECEIPT_SUFFIX,
    UPLOADED_LOCAL_AREA,
    episode_attrs,
    skip_reason,
)

STATES = ("waiting", "claimed", "uploaded", "uploaded-local", "quarantined", "discarded", "empty", LOW_ACTIVITY, "partial")


@dataclass
class StateCount:
    episodes: int = 0
    frames: int = 0
    ids: list[str] = field(default_factory=list)

    def add(self, episode_id: str, frames: int) -> None:
        self.episodes += 1
        self.frames += frames
        self.ids.append(episode_id)


def _length(path: Path) -> int:
    try:
        return episode_attrs(path).length or 0
    except (OSError, ValueError):
        return 0


def _sealed_dirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix == schema.SEALED_SUFFIX and p.is_dir())


def spool_status(spool: Path, min_active: float = 0.0) -> dict[str, StateCount]:
    """``min_active``: the uploader's --min-active, so the episodes it leaves behind count as low-activity."""
    counts = {state: StateCount() for state in STATES}
    for path in _sealed_dirs(spool):
        if not is_episode_id(path.stem):
            continue
        try:
            attrs = episode_attrs(path)
        except (OSError, ValueError):  # unreadable: waiting, and quarantined when an uploader claims it
            counts["waiting"].add(path.stem, 0)
            continue
        counts[skip_reason(attrs, min_active) or "waiting"].add(path.stem, attrs.length or 0)
    for path in _sealed_dirs(spool / CLAIMED_AREA):
        counts["claimed"].add(path.name.split(".")[0], _length(path))
    for area, state in ((UPLOADED_AREA, "uploaded"), (UPLOADED_LOCAL_AREA, "uploaded-local")):
        folder = spool / area
        receipts = sorted(folder.glob("*" + RECEIPT_SUFFIX)) if folder.is_dir() else []
        for receipt in receipts:
            eid = receipt.name[: -len(RECEIPT_SUFFIX)]
            if state == "uploaded-local" and not (folder / schema.sealed_name(eid)).is_dir():
                continue  # pushed to the Hub since: counted there
            try:
                frames = int(json.loads(receipt.read_text()).get("length", 0))
            except (OSError, ValueError):
                frames = 0
            counts[state].add(eid, frames)
    for path in _sealed_dirs(spool / QUARANTINE_AREA):
        counts["quarantined"].add(path.stem, _length(path))
    for path in partial_episodes(spool):
        try:
            frames = read_committed(path)
        except CorruptEpisodeError:
            frames = 0
        counts["partial"].add(path.stem, frames)
    return counts


def waiting_count(spool: Path, min_active: float = 0.0) -> int:
    """Episodes waiting for an upload: what a down Hub leaves queued."""
    return spool_status(spool, min_active)["waiting"].episodes
