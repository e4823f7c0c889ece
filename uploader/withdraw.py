"""Withdrawals at the target: remove a withdrawn participant's rows from a dataset, in one commit.

A request (``shared.spool.withdrawals``) is applied by the uploader before its next commit to a target,
and at start-up and every rescan: the target's index shards are read once to find the participant's
episodes (``affected``: the cost grows with the index, and is paid once per withdrawal and target, as
the applied marker keeps it from being redone); the shards holding them are rewritten without them
by ``uploader.compact.merge`` under new deterministic names, and the commit adds those, deletes the old
ones and updates info.json and the card: one commit of at most ``MAX_OPERATIONS`` files (a participant
spread over more shards than fit is withdrawn in several commits, each consistent on its own).

Exactly-once stays consistent: the removed ids are simply no longer listed (``uploader.published``
reads the new index shards like any other), and their episodes are never uploaded again from this spool
(``Uploader.convert`` and ``Batcher`` drop any episode of a withdrawn participant, and delete it).
"""

from __future__ import annotations

import io
import json
import logging
import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.parquet as pq
from PIL import Image

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES, BlockCodec
from gymrec.shared.spool import withdrawals
from gymrec.uploader.compact import Merged, Shard
from gymrec.uploader.convert import ConvertOptions, preview_steps, preview_strip

if TYPE_CHECKING:  # they import this module's planning
    from gymrec.uploader.hub import HubPusher
    from gymrec.uploader.local import LocalWriter

log = logging.getLogger(__name__)

MAX_OPERATIONS = 95  # the Hub takes 100 files a commit; info.json and the card are two of them
PARTICIPANT_COLUMN = "participant"


def participant_rows(index_file: str, blob: bytes, participant: str) -> set[str]:
    """The ids of ``participant``'s episodes in one index shard (by its participant column, or, in
    shards written before the column, by the attributes JSON)."""
    parquet = pq.ParquetFile(io.BytesIO(blob))
    if PARTICIPANT_COLUMN in parquet.schema_arrow.names:
        rows = parquet.read(columns=["episode_id", PARTICIPANT_COLUMN]).to_pylist()
        return {str(r["episode_id"]) for r in rows if r[PARTICIPANT_COLUMN] == participant}
    rows = parquet.read(columns=["episode_id", layout.INDEX_ATTRS_COLUMN]).to_pylist()
    return {str(r["episode_id"]) for r in rows if json.loads(r[layout.INDEX_ATTRS_COLUMN]).get("participant") == participant}


def affected(index_files: Iterable[str], read: Callable[[str], bytes], participant: str) -> dict[Shard, frozenset[str]]:
    """{shard: the participant's episode ids in it}, reading every index shard in ``index_files`` once."""
    out: dict[Shard, frozenset[str]] = {}
    for path in sorted(index_files):
        if not layout.is_index_path(path):
            continue
        blob = read(path)
        ids = participant_rows(path, blob, participant)
        if ids:
            parts = path.split("/")
            blocks = layout.INDEX_FRAMES_FILE_COLUMN in pq.ParquetFile(io.BytesIO(blob)).schema_arrow.names  # format 3
            out[Shard(parts[2], parts[4][: -len(layout.SHARD_SUFFIX)], 0, blocks)] = frozenset(ids)
    return out


def commits(found: dict[Shard, frozenset[str]]) -> list[list[tuple[Shard, ...]]]:
    """The affected shards as commits of groups: one group per config (merged into one shard, or none
    when nothing is left), each commit within ``MAX_OPERATIONS`` (a group of n costs up to 3n deletions,
    three additions and maybe the config's preview)."""
    by_config: dict[str, list[Shard]] = defaultdict(list)
    for shard in sorted(found, key=lambda s: (s.config, s.shard)):
        by_config[shard.config].append(shard)
    per_group = (MAX_OPERATIONS - 4) // 3
    groups = [tuple(shards[i : i + per_group]) for _, shards in sorted(by_config.items()) for i in range(0, len(shards), per_group)]
    out: list[list[tuple[Shard, ...]]] = [[]]
    used = 0
    for group in groups:
        cost = 3 * len(group) + 4
        if out[-1] and used + cost > MAX_OPERATIONS:
            out.append([])
            used = 0
        out[-1].append(group)
        used += cost
    return out if out[0] else []


def leave_out(group: tuple[Shard, ...], found: dict[Shard, frozenset[str]]) -> frozenset[str]:
    return frozenset().union(*(found[s] for s in group))


def emptied_previews(current: dict[str, Any], new_info: dict[str, Any]) -> list[str]:
    """The previews of configs the withdrawal left empty (their frames may be the participant's)."""
    return [layout.preview_path(c) for c in current["configs"] if c not in new_info["configs"]]


def redrawn_previews(merged: list[Merged]) -> dict[str, bytes]:
    """{preview path: a new strip} for each config a withdrawal rewrote and left episodes in: the old
    strip may show the withdrawn participant's frames, so it is redrawn from the first episode left."""
    out: dict[str, bytes] = {}
    for m in merged:
        if m.withdrawn and m.files and layout.preview_path(m.config) not in out:
            out[layout.preview_path(m.config)] = _strip_of_first(m.files[layout.data_path(m.config, m.shard)],
                                                                 m.files[layout.index_path(m.config, m.shard)],
                                                                 m.files.get(layout.frames_path(m.config, m.shard)))  # fmt: skip
    return out


def _strip_of_first(data_file: Path, index_file: Path, frames_file: Path | None) -> bytes:
    """The preview strip of the first episode in a shard: reads its observations only, up to its end
    (from its frame blocks in format 3)."""
    rows = pq.read_table(index_file).to_pylist()
    first = min(rows, key=lambda r: int(r[layout.INDEX_ROW_START_COLUMN]))
    start, count = int(first[layout.INDEX_ROW_START_COLUMN]), int(first[layout.INDEX_ROW_COUNT_COLUMN])
    wanted = sorted(preview_steps(count))
    if frames_file is not None:
        return preview_strip(_block_frames(frames_file, first, wanted))
    frames: list[np.ndarray] = []
    targets = {start + t for t in wanted}
    position = 0
    for batch in pq.ParquetFile(data_file).iter_batches(batch_size=256, columns=[layout.OBS_COLUMN]):
        for offset, cell in enumerate(batch.column(0).to_pylist()):
            if position + offset in targets:
                frames.append(np.asarray(Image.open(io.BytesIO(cell["bytes"]))))
        position += batch.num_rows
        if position >= start + count:
            break
    return preview_strip(frames)


def _block_frames(frames_file: Path, row: dict[str, Any], steps: list[int]) -> list[np.ndarray]:
    """The frames at ``steps`` of the episode ``row`` indexes, from its blocks in ``frames_file``."""
    blocks = pq.read_table(frames_file).slice(int(row[layout.INDEX_FRAMES_ROW_START_COLUMN]),
                                              int(row[layout.INDEX_FRAMES_ROW_COUNT_COLUMN])).to_pydict()  # fmt: skip
    shape, codec = tuple(row[layout.INDEX_FRAME_SHAPE_COLUMN]), BlockCodec()
    out = []
    for t in steps:
        b = t // BLOCK_FRAMES
        frame = codec.decode(blocks[layout.BLOCK_DATA_COLUMN][b], blocks[layout.BLOCK_COUNT_COLUMN][b], shape)[t % BLOCK_FRAMES]
        out.append(frame.reshape(frame.shape[:2]) if frame.ndim == 3 and frame.shape[2] == 1 else frame)
    return out


def removed(merged: list[Merged]) -> int:
    return sum(len(m.withdrawn) for m in merged)


class Applier:
    """Applies the spool's pending withdrawal requests to the targets one uploader writes to: its local
    dataset (``"local:<dir>"``), or any repo with its Hub pusher."""

    def __init__(self, spool: Path, options: ConvertOptions, local: LocalWriter | None, pusher: HubPusher | None,
                 work: Path, owner: str) -> None:
        self.spool = spool
        self._options = options
        self._local = local
        self._pusher = pusher
        self._work = work  # where a Hub target's shards are rewritten (a folder of this owner's, removed after)
        self._owner = owner
        self._swept: set[str] = set()  # requests finished in the spool by this run (a sweep reads every episode)

    def _handles(self, target: str) -> bool:
        if target.startswith(withdrawals.LOCAL_TARGET):
            where = Path(target[len(withdrawals.LOCAL_TARGET):])
            return self._local is not None and where.resolve() == self._local.local_dir.resolve()
        return self._pusher is not None

    def _remove(self, target: str, participant: str) -> int:
        if self._local is not None and target.startswith(withdrawals.LOCAL_TARGET):
            return self._local.withdraw(participant, self._options)
        assert self._pusher is not None
        root = self._work / ".staging" / f"withdraw.{self._owner}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        try:
            return self._pusher.withdraw(target, participant, root, self._options)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def apply(self, targets: Iterable[str] = ()) -> int:
        """Finish interrupted requests in the spool, then apply every request not yet applied to each of
        ``targets`` and of the targets it names that this uploader handles; episodes removed."""
        total = 0
        for doc in withdrawals.requests(self.spool):
            participant = doc["participant"]
            if doc.get("swept_at") is None and participant not in self._swept:
                # A crash between the request and its deletions, or a live recording (once sealed, it is
                # deleted by ``Uploader.convert``: one sweep a run is enough).
                doc = doc | {"targets": list(withdrawals.sweep(self.spool, participant, doc).targets)}
                self._swept.add(participant)
            for target in sorted(set(targets) | set(doc["targets"])):
                if not self._handles(target) or withdrawals.is_applied(self.spool, participant, target):
                    continue
                count = self._remove(target, participant)
                withdrawals.mark_applied(self.spool, participant, target, {"episodes_removed": count})
                if count:
                    log.info("withdrew participant %s from %s: %d episode(s) removed", participant[:12], target, count)
                total += count
        return total
