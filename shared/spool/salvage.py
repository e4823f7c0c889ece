"""What survived of an orphaned episode: the rows on disk that prove themselves, and the journal.

Recovery trusts nothing it cannot check. ``committed.json`` is a claim, not a fact: a power cut can
leave it pointing at chunks that never reached the disk, a hand-renamed sealed episode has no
journal, a bit can flip. So the usable prefix is found chunk by chunk, each chunk of every array
read and its crc32c checked (``shared.spool.chunks``):

- a chunk whose every array is present and checksum-valid counts as far as its timestamps are
  real (a step's wall-clock time is never 0; a chunk's padding is), whatever the claim says: the
  marker lags the chunks by up to a sync interval, a sealed marker ends mid-chunk, a bogus one
  claims steps that were never written;
- the first chunk that is missing, fails its checksum, or is only partly filled ends the prefix.
  The journal rebuilds what lies past it, where it reaches.

Nothing is deleted. A chunk file recovery cannot use is moved to ``<spool>/set-aside/<episode>/``
before anything is rewritten; files it rewrites are ones the re-simulation reproduces and checks.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool import schema
from gymrec.shared.spool.chunks import ArrayMeta
from gymrec.shared.spool.directory import SET_ASIDE_AREA
from gymrec.shared.spool.episode import Episode, read_committed
from gymrec.shared.spool.fsio import read_regular
from gymrec.shared.spool.spaces import action_leaves

log = logging.getLogger(__name__)
_CHUNK_NAME = re.compile(r"^c[./](\d+)")


@dataclass(frozen=True)
class Survivors:
    """The verified rows on disk and the journal's actions (which may reach further)."""

    verified: int  # rows [0, verified) of every array are on disk and checksum-valid
    claimed: int  # what committed.json said
    timestamps: np.ndarray  # the journal: one entry per journaled step
    journal: dict[str, np.ndarray]
    steps: dict[str, np.ndarray] = field(default_factory=dict)  # the journal's shown_ns, decided_ns, actor

    @property
    def journal_steps(self) -> int:
        return len(self.timestamps)

    @property
    def total(self) -> int:
        return max(self.verified, self.journal_steps)


JOURNAL_LIMIT = 1 << 30  # ~30 bytes a step: days of play; anything larger is not a journal


def read_journal(partial: Path, disk: Episode) -> schema.Journaled:
    try:
        data = read_regular(partial / schema.JOURNAL_NAME, JOURNAL_LIMIT)
    except FileNotFoundError:
        data = b""
    return schema.journal_format(tuple(action_leaves(disk.attrs.action_space)), data).unpack_all(data)


def step_arrays(disk: Episode) -> list[str]:
    return ([schema.action_path(leaf.name) for leaf in disk.action_leaves] + list(schema.STEP_SCALARS)
            + [schema.info_path(key) for key in disk.info_keys])


def obs_arrays(disk: Episode) -> list[str]:
    return [p for leaf in disk.obs_leaves for p in (schema.obs_path(leaf.name), schema.hash_path(leaf.name))]


def _chunk_ok(disk: Episode, names: list[str], index: int) -> bool:
    for name in names:
        try:
            disk.meta(name).read_chunk(index, disk.path.name, name)
        except CorruptEpisodeError as e:
            log.warning("%s", e)
            return False
    return True


def _credited(disk: Episode, index: int) -> int:
    """How many of chunk ``index``'s rows are real steps: a step's wall-clock time is never 0."""
    stamps = disk.meta(schema.TIMESTAMP).read_chunk(index, disk.path.name, schema.TIMESTAMP)
    padding = np.flatnonzero(stamps == 0)
    return int(padding[0]) if len(padding) else len(stamps)


def survey(partial: Path, disk: Episode) -> Survivors:
    """The usable prefix on disk plus the journal (see the module docstring)."""
    try:
        claimed = read_committed(partial)
    except CorruptEpisodeError as e:
        log.warning("%s; checking the chunks instead", e)
        claimed = 0
    journaled = read_journal(partial, disk)
    chunk = disk.attrs.chunk_steps
    names = step_arrays(disk) + obs_arrays(disk)
    verified = 0
    index = 0
    while _has_chunk(disk, index) and _chunk_ok(disk, names, index):
        rows = _credited(disk, index)
        verified += rows
        index += 1
        if rows < chunk:
            break
    if claimed > verified:
        log.warning("%s: committed.json claims %d steps, the chunks on disk bear out %d", partial.name, claimed, verified)
    return Survivors(verified, claimed, journaled.timestamps, journaled.leaves, journaled.steps)


def _has_chunk(disk: Episode, index: int) -> bool:
    try:
        return disk.meta(schema.TIMESTAMP).chunk_file(index).is_file()
    except CorruptEpisodeError:
        return False


def set_aside_unusable(disk: Episode, survivors: Survivors, first_rewritten: int) -> list[Path]:
    """Move away every chunk file at or past ``first_rewritten`` that the new episode will not hold.

    Files the re-simulation rewrites (same index, inside the new length) are reproduced from the
    same actions; the rest -- damaged chunks, chunks past the end -- go to ``set-aside``.
    """
    moved: list[Path] = []
    total = survivors.total
    obs_names = set(obs_arrays(disk))
    for name in step_arrays(disk) + obs_arrays(disk):
        try:
            meta = disk.meta(name)
        except CorruptEpisodeError:
            continue
        rows = total + 1 if name in obs_names else total
        needed = -(-rows // meta.chunk_rows)
        for index in _present(meta):
            if index >= first_rewritten and not (index < needed and _chunk_ok(disk, [name], index)):
                moved.append(_move(disk.path, meta.chunk_file(index)))
    return moved


def _present(meta: ArrayMeta) -> list[int]:
    """The chunk indices with a file in this array, in either chunk key layout."""
    if meta.separator == ".":
        names = [p.name for p in meta.path.iterdir()] if meta.path.is_dir() else []
    else:
        names = [f"c/{p.name}" for p in (meta.path / "c").iterdir()] if (meta.path / "c").is_dir() else []
    return sorted(int(m[1]) for n in names if (m := _CHUNK_NAME.match(n)))


def _move(partial: Path, file: Path) -> Path:
    target = partial.parent / SET_ASIDE_AREA / partial.name / file.relative_to(partial)
    target.parent.mkdir(parents=True, exist_ok=True)
    while target.exists():  # an earlier recovery set one aside under this name: keep both
        target = target.with_name(f"{target.name}.{time.time_ns()}")
    os.rename(file, target)
    log.warning("%s: set aside %s (not usable)", partial.name, file.relative_to(partial))
    return target
