"""Writing an episode's frames as format-3 block rows (``shared.dataset.blocks``), and its preview images.

Used by the spool conversion (``uploader.convert``) and by the format-2 converter (``uploader.reformat``):
frames arrive in batches of any size, the final observation last; full 64-frame blocks are encoded
by the thread pool as they fill (zstd and numpy's XOR release the GIL), in order, into a parquet
file of small row groups. Memory holds at most one partial block and one batch of futures.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES, BlockCodec

FRAMES_SCHEMA = pa.schema([
    pa.field(layout.BLOCK_EPISODE_COLUMN, pa.string()),
    pa.field(layout.BLOCK_INDEX_COLUMN, pa.int32()),
    pa.field(layout.BLOCK_FIRST_STEP_COLUMN, pa.int64()),
    pa.field(layout.BLOCK_COUNT_COLUMN, pa.int32()),
    pa.field(layout.BLOCK_DATA_COLUMN, pa.binary()),
])  # fmt: skip


def block_table(episode_id: str, first_block: int, blocks: list[tuple[int, bytes]]) -> pa.Table:
    """Block rows ``first_block``... of an episode; ``blocks``: (frame count, bytes) in order."""
    ids = range(first_block, first_block + len(blocks))
    return pa.Table.from_arrays([
        pa.array([episode_id] * len(blocks), pa.string()),
        pa.array(list(ids), pa.int32()),
        pa.array([b * BLOCK_FRAMES for b in ids], pa.int64()),
        pa.array([n for n, _ in blocks], pa.int32()),
        pa.array([data for _, data in blocks], pa.binary()),
    ], schema=FRAMES_SCHEMA)  # fmt: skip


class BlockEncoder:
    """Cuts a stream of frames into blocks and encodes them on ``pool``; ``take`` returns the finished rows."""

    def __init__(self, episode_id: str, pool: ThreadPoolExecutor) -> None:
        self.episode_id = episode_id
        self.pool = pool
        self._carry: list[np.ndarray] = []  # frames of the block being filled
        self._futures: list[tuple[int, Future[bytes]]] = []
        self.blocks = 0  # blocks taken so far
        self._codecs = threading.local()  # a codec per pool thread: its contexts and colour table are reused

    def _encode(self, frames: np.ndarray) -> bytes:
        codec = getattr(self._codecs, "codec", None)
        if codec is None:
            codec = self._codecs.codec = BlockCodec()
        return codec.encode(frames)

    def add(self, frames: np.ndarray) -> None:
        pending = np.concatenate([*self._carry, frames]) if self._carry else frames
        full = len(pending) // BLOCK_FRAMES * BLOCK_FRAMES
        for i in range(0, full, BLOCK_FRAMES):
            part = pending[i : i + BLOCK_FRAMES]
            self._futures.append((len(part), self.pool.submit(self._encode, part)))
        self._carry = [pending[full:].copy()] if full < len(pending) else []

    def finish(self) -> None:
        """The last, partial block (the final observation is the episode's last frame)."""
        if self._carry:
            last = self._carry[0]
            self._futures.append((len(last), self.pool.submit(self._encode, last)))
            self._carry = []

    def take(self, pending: int = 0) -> pa.Table | None:
        """The encoded blocks, in order, leaving up to ``pending`` still being encoded: the caller reads
        the next frames meanwhile, and memory holds at most ``pending`` blocks more."""
        count = len(self._futures) - pending
        if count <= 0:
            return None
        done = [(n, f.result()) for n, f in self._futures[:count]]
        table = block_table(self.episode_id, self.blocks, done)
        self.blocks += len(done)
        self._futures = self._futures[count:]
        return table


def block_starts(start: int, stop: int) -> range:
    """The steps in [start, stop) whose frame is a preview: the first of each block."""
    first = -(-start // BLOCK_FRAMES) * BLOCK_FRAMES
    return range(first, stop, BLOCK_FRAMES)


def frames_file(root: Path, episode_id: str) -> Path:
    return root / f"{episode_id}.frames{layout.SHARD_SUFFIX}"
