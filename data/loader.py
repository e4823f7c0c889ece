"""``WindowReader``: random access to every window of the selected episodes, and a numpy batch iterator.

Built once (it reads the episode index, never a frame), then copied to DataLoader workers: it pickles
as plain values, and each process opens the episodes it reads itself, lazily, keeping the last few open.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gymrec.data.episodes import EpisodeReader, StepArrays
from gymrec.data.select import Select, select_episodes
from gymrec.data.sources import Source
from gymrec.data.windows import Piece, Window, WindowSpec, assemble, pieces, positions, window_index
from gymrec.shared.spool.spaces import ACTION_LEAF

log = logging.getLogger(__name__)


@dataclass
class _Open:
    """The episodes one process has open (least recently used first); never pickled."""

    pid: int
    size: int
    episodes: OrderedDict[int, tuple[EpisodeReader, StepArrays]] = field(default_factory=OrderedDict)
    context: dict[str, Any] = field(default_factory=dict)  # what the opener shares between episodes


class WindowReader:
    """Every window of K steps of the episodes ``select`` keeps; ``reader[i]`` is one window (a dict
    of numpy arrays), ``len(reader)`` how many there are. ``verify``: check every frame read against its
    recorded hash (replay does it by default; training need not). ``keep_open``: episodes kept open per process.
    """

    def __init__(self, source: Source, windows: WindowSpec | None = None, select: Select | None = None,
                 verify: bool = False, keep_open: int = 64) -> None:  # fmt: skip
        self.spec = windows or WindowSpec()
        self.select = select or Select()
        self.verify = verify
        self.keep_open = max(1, keep_open)
        catalog, self._opener = source.open()
        chosen = select_episodes(catalog, self.select)
        self.where = catalog.where
        self.episode_ids: tuple[str, ...] = tuple(e.episode_id for e in chosen)
        self.lengths: tuple[int, ...] = tuple(e.length for e in chosen)
        self.fields = tuple(e.fields for e in chosen)
        self._open: _Open | None = None
        self.positions = positions(self.lengths, self.spec)
        bad = None
        if self.select.actor_index is not None:  # per step: read every chosen episode's actor array once
            bad = [np.append(self._episode(i)[1].actor != self.select.actor_index, np.zeros(p - n, np.bool_))
                   for i, (n, p) in enumerate(zip(self.lengths, self.positions, strict=True))]  # fmt: skip
        self.window_episode, self.window_start = window_index(self.positions, self.spec, bad)
        log.debug("%s: %d windows of %d steps from %d episodes", self.where, len(self), self.spec.length, len(chosen))

    def __getstate__(self) -> dict[str, object]:
        return self.__dict__ | {"_open": None}  # open files stay in the process that opened them

    def __len__(self) -> int:
        return int(self.window_episode.size)

    def close(self) -> None:
        """Close what this process opened (it reopens on the next read)."""
        if self._open is not None and self._open.pid == os.getpid():
            for shared in self._open.context.values():
                shared.close()
        self._open = None

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _episode(self, index: int) -> tuple[EpisodeReader, StepArrays]:
        pid = os.getpid()
        if self._open is None or self._open.pid != pid:  # a forked worker never reads its parent's handles
            self._open = _Open(pid, self.keep_open)
        opened = self._open.episodes
        found = opened.get(index)
        if found is None:
            reader = self._opener(self.episode_ids[index], self._open.context)
            found = opened[index] = (reader, reader.steps())
            while len(opened) > self._open.size:
                opened.popitem(last=False)
        opened.move_to_end(index)
        return found

    def _read(self, part: Piece) -> tuple[StepArrays, np.ndarray]:
        reader, steps = self._episode(part.episode)
        return steps, reader.frames(part.start, part.start + part.count, self.verify)

    def __getitem__(self, i: int) -> Window:
        if not -len(self) <= i < len(self):
            raise IndexError(f"window {i} of {len(self)}")
        parts = pieces(int(self.window_episode[i]), int(self.window_start[i]), self.positions, self.spec)
        steps = self._episode(parts[0].episode)[1]
        return assemble(parts, self.spec, self._read, dict_action=ACTION_LEAF not in steps.action)

    def order(self, shuffle: bool = True, seed: int = 0, epoch: int = 0) -> np.ndarray:
        """The window order of one epoch: the same for the same (seed, epoch) in every process."""
        if not shuffle:
            return np.arange(len(self))
        return np.random.default_rng([seed, epoch]).permutation(len(self))

    def batches(self, batch_size: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                drop_last: bool = False) -> Iterator[Window]:  # fmt: skip
        """One epoch of batches: every array gains a leading batch axis (``collate``)."""
        order = self.order(shuffle, seed, epoch)
        for at in range(0, len(order), batch_size):
            chunk = order[at : at + batch_size]
            if drop_last and chunk.size < batch_size:
                return
            yield collate([self[int(i)] for i in chunk])


def collate(windows: list[Window]) -> Window:
    """Windows stacked along a new first axis (nested dicts, such as Dict actions, stacked per key)."""
    first = windows[0]
    return {key: collate([w[key] for w in windows]) if isinstance(value, dict) else np.stack([w[key] for w in windows])
            for key, value in first.items()}  # fmt: skip
