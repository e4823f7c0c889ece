"""gymrec.data.torch: every window once across DataLoader workers, each worker opening its own episodes."""

from __future__ import annotations

import pytest

from gymrec.data import SpoolDir, WindowReader, WindowSpec
from tests.data_helpers import DataWorld

torch = pytest.importorskip("torch")


def test_a_stream_splits_one_seeded_order_across_workers(data_world: DataWorld) -> None:
    from gymrec.data.torch import WindowDataset, WindowStream

    reader = WindowReader(SpoolDir(data_world.spool), WindowSpec(16, stride=16))
    reader[0]  # opened here: the workers must not use (or receive) these handles
    stream = WindowStream(reader, seed=5)
    loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=2)
    seen = [(int(w["episode"][0]), int(w["step"][0])) for w in loader]
    expected = [(int(reader.window_episode[i]), int(reader.window_start[i])) for i in reader.order(True, 5, 0)]
    assert sorted(seen) == sorted(expected) and len(seen) == len(set(seen)) == len(reader)
    stream.set_epoch(1)
    assert [(int(w["episode"][0]), int(w["step"][0])) for w in torch.utils.data.DataLoader(stream, batch_size=None)] != expected
    batch = next(iter(torch.utils.data.DataLoader(WindowDataset(reader), batch_size=3)))
    assert batch["frames"].dtype == torch.uint8 and tuple(batch["frames"].shape) == (3, 16, 210, 160, 3)
    assert batch["valid"].dtype == torch.bool and batch["action"].shape == (3, 16)
