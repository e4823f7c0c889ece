"""gymrec.data's window arithmetic without any episode: which windows exist and how one is put together."""

from __future__ import annotations

import numpy as np
import pytest

from gymrec.data.episodes import StepArrays
from gymrec.data.windows import Piece, WindowSpec, assemble, pieces, window_index
from gymrec.shared.errors import DatasetError


def _pairs(lengths: list[int], spec: WindowSpec, bad: list[np.ndarray] | None = None) -> list[tuple[int, int]]:
    episode, start = window_index(lengths, spec, bad)
    return list(zip(episode.tolist(), start.tolist(), strict=True))


def test_full_windows_never_cross_or_pad() -> None:
    assert _pairs([5, 3, 4], WindowSpec(4)) == [(0, 0), (0, 1), (2, 0)]
    assert _pairs([9], WindowSpec(4, stride=2)) == [(0, 0), (0, 2), (0, 4)]


def test_padding_covers_every_step_once_more_at_most() -> None:
    assert _pairs([5, 3], WindowSpec(4, pad=True)) == [(0, 0), (0, 1), (1, 0)]
    assert _pairs([10], WindowSpec(4, stride=4, pad=True)) == [(0, 0), (0, 4), (0, 8)]
    assert _pairs([8], WindowSpec(4, stride=4, pad=True)) == [(0, 0), (0, 4)]


def test_crossing_windows_run_over_the_concatenation() -> None:
    assert _pairs([3, 3], WindowSpec(4, cross_episodes=True)) == [(0, 0), (0, 1), (0, 2)]
    spec = WindowSpec(4, cross_episodes=True)
    assert [(p.episode, p.start, p.count, p.at) for p in pieces(0, 2, [3, 1, 5], spec)] == [(0, 2, 1, 0), (1, 0, 1, 1), (2, 0, 2, 2)]
    assert [(p.episode, p.count) for p in pieces(0, 2, [3, 1, 5], WindowSpec(4))] == [(0, 1)]


def test_windows_touching_a_bad_step_are_left_out() -> None:
    bad = [np.array([0, 0, 1, 0, 0, 0], bool), np.zeros(4, bool)]
    assert _pairs([6, 4], WindowSpec(2), bad) == [(0, 0), (0, 3), (0, 4), (1, 0), (1, 1), (1, 2)]
    assert _pairs([6, 4], WindowSpec(2, cross_episodes=True), bad) == [(0, 0), (0, 3), (0, 4), (0, 5), (1, 0), (1, 1), (1, 2)]


def test_bad_specs_are_refused() -> None:
    with pytest.raises(DatasetError, match="at least 1"):
        WindowSpec(0)


def _steps(n: int, offset: int, terminal: bool) -> StepArrays:
    flags = np.zeros(n, bool)
    flags[-1] = terminal
    return StepArrays(action={"value": np.arange(n) + offset}, reward=np.arange(n, dtype=float) + offset,
                      terminated=flags, truncated=np.zeros(n, bool), timestamp=np.zeros(n), shown_ns=np.zeros(n, np.int64),
                      decided_ns=np.zeros(n, np.int64), actor=np.ones(n, np.int8))  # fmt: skip


def test_a_crossing_window_marks_where_episodes_end_and_begin() -> None:
    lengths = [3, 4]
    steps = {0: _steps(3, 0, terminal=False), 1: _steps(4, 100, terminal=True)}

    def read(part: Piece) -> tuple[StepArrays, np.ndarray]:
        frames = np.full((part.count, 2, 2, 1), part.episode + 1, np.uint8)
        return steps[part.episode], frames

    spec = WindowSpec(6, cross_episodes=True)
    w = assemble(pieces(0, 1, lengths, spec), spec, read, dict_action=False)
    assert w["action"].tolist() == [1, 2, 100, 101, 102, 103]
    assert w["first"].tolist() == [False, False, True, False, False, False]
    assert w["done"].tolist() == [False, True, False, False, False, True]  # a quit episode's last step is done too
    assert w["frames"][:, 0, 0, 0].tolist() == [1, 1, 2, 2, 2, 2] and w["valid"].all()
    padded_spec = WindowSpec(6, pad=True)
    padded = assemble(pieces(1, 1, lengths, padded_spec), padded_spec, read, dict_action=True)
    assert padded["valid"].tolist() == [True] * 3 + [False] * 3
    assert padded["step"].tolist() == [1, 2, 3, -1, -1, -1] and padded["actor"].tolist() == [1, 1, 1, -1, -1, -1]
    assert padded["action"]["value"].tolist() == [101, 102, 103, 0, 0, 0] and not padded["frames"][3:].any()


def test_dataset_action_columns_come_back_as_the_spool_leaves() -> None:
    """Dict (VizDoom Deathmatch) and MultiBinary action columns, as the uploader encodes them."""
    import pyarrow as pa

    from gymrec.data.dataset import action_arrays

    desc = {"type": "Dict", "spaces": {"binary": {"type": "Discrete", "n": 18, "start": 0},
                                       "continuous": {"type": "Box", "shape": [3], "dtype": "float32", "low": -1, "high": 1}}}  # fmt: skip
    column = pa.chunked_array([pa.array([{"binary": 4, "continuous": [0.5, -0.25, 1.0]},
                                         {"binary": 17, "continuous": [0.0, 0.0, -1.0]}])])  # fmt: skip
    leaves = action_arrays(desc, column)
    assert leaves["binary"].tolist() == [4, 17] and leaves["binary"].dtype == np.int64
    assert leaves["continuous"].dtype == np.float32 and leaves["continuous"].tolist() == [[0.5, -0.25, 1.0], [0.0, 0.0, -1.0]]
    multi = action_arrays({"type": "MultiBinary", "shape": [2, 2]}, pa.chunked_array([pa.array([[[1, 0], [0, 1]]])]))
    assert multi["value"].shape == (1, 2, 2) and multi["value"].dtype == np.int8
