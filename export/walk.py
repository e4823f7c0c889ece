"""Which episodes of a source an export writes, and what it says about the others.

A whole source (``--all``, a spool, a dataset) skips its discarded episodes quietly, as replay does.
A damaged episode or shard is skipped with one warning and the export goes on with the rest; the
command then exits with the corruption code (5), so a script still learns that something was left
out. An episode the user named on its own is not skipped: its error is the command's error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gymrec.shared.dataset.select import Job
from gymrec.shared.errors import GymrecError
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.spool.sources import EpisodeSource, is_corruption


@dataclass
class Tally:
    written: int = 0
    skipped: int = 0  # discarded, or not of the env asked for
    corrupt: list[str] = field(default_factory=list)  # labels of the damaged episodes skipped


def each_episode(jobs: Sequence[Job], work: Callable[[EpisodeSource], bool], warn: Callable[[str], None]) -> Tally:
    """Run ``work`` on every episode worth exporting; ``work`` returns False for one it chose to skip."""
    tally = Tally()
    alone = len(jobs) == 1 and jobs[0].explicit
    for job in jobs:
        try:
            source = job.open()
            if source is None or (not job.explicit and source.end_reason == EndReason.DISCARDED):
                tally.skipped += 1
            elif work(source):
                tally.written += 1
            else:
                tally.skipped += 1
        except GymrecError as e:
            if alone or not is_corruption(e):
                raise
            warn(f"left out: {e}")
            tally.corrupt.append(job.label)
    return tally
