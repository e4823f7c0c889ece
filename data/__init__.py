"""``gymrec.data``: windows of consecutive frames and actions for training, from a local dataset, a Hub
repo or a spool (``docs/training.md``).

The core needs numpy and gymrec only; ``gymrec.data.torch`` adds the PyTorch adapters (extra ``torch``).
"""

from gymrec.data.loader import WindowReader, collate
from gymrec.data.select import Select
from gymrec.data.sources import HubDataset, LocalDataset, SpoolDir
from gymrec.data.windows import WindowSpec

__all__ = ["HubDataset", "LocalDataset", "Select", "SpoolDir", "WindowReader", "WindowSpec", "collate"]
