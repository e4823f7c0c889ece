"""PyTorch adapters of ``WindowReader`` (the optional extra ``torch``: ``pip install 'gymrec[torch]'``).

``WindowDataset`` is map-style: a ``DataLoader`` with ``shuffle=True`` and any number of workers
samples windows; each worker opens the episodes it reads. ``WindowStream`` is iterable: one seeded
order per epoch (``set_epoch``), cut into one contiguous share per worker so each window comes once
(with ``shuffle=False`` a worker reads its episodes front to back). Items are the
reader's numpy windows; the DataLoader's default collate turns them into tensors.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.utils.data

from gymrec.data.loader import WindowReader
from gymrec.data.windows import Window


class WindowDataset(torch.utils.data.Dataset[Window]):
    def __init__(self, reader: WindowReader) -> None:
        self.reader = reader

    def __len__(self) -> int:
        return len(self.reader)

    def __getitem__(self, index: int) -> Window:
        return self.reader[index]


class WindowStream(torch.utils.data.IterableDataset[Window]):
    def __init__(self, reader: WindowReader, shuffle: bool = True, seed: int = 0) -> None:
        self.reader = reader
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (in the main process): a new order, the same in every worker."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.reader)

    def __iter__(self) -> Iterator[Window]:
        order = self.reader.order(self.shuffle, self.seed, self.epoch)
        worker = torch.utils.data.get_worker_info()
        if worker is not None:  # contiguous shares: unshuffled, each worker reads its episodes' blocks in order
            share = -(-len(order) // worker.num_workers)
            order = order[worker.id * share : (worker.id + 1) * share]
        for index in order:
            yield self.reader[int(index)]
