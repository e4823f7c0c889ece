"""gymrec.data against real recordings: the spool, its local dataset and the suite's Hub give the same windows."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants

from gymrec.data import HubDataset, LocalDataset, Select, SpoolDir, WindowReader, WindowSpec
from gymrec.shared.errors import CorruptEpisodeError, DatasetError
from tests.data_helpers import CONFIG, STEPS, DataWorld, seed_hub
from tests.format2 import downgrade
from tests.replay_helpers import copy_episode, read_row, rewrite_rows
from tests.uploader_helpers import spool_frames

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
SPEC = WindowSpec(32, stride=32, pad=True)


def _same(a: WindowReader, b: WindowReader) -> None:
    assert len(a) == len(b) > 0 and a.episode_ids == b.episode_ids
    for i in range(len(a)):
        wa, wb = a[i], b[i]
        assert wa.keys() == wb.keys()
        for key in wa:
            assert np.array_equal(wa[key], wb[key]), (i, key)


def test_spool_and_dataset_give_the_recorded_windows(data_world: DataWorld) -> None:
    spool = WindowReader(SpoolDir(data_world.spool), SPEC, verify=True)
    local = WindowReader(LocalDataset(data_world.dataset), SPEC, verify=True)
    _same(spool, local)
    frames, _, attrs = spool_frames(data_world.episodes[1])
    assert len(local) == 2 * -(-STEPS // 32)
    last = local[len(local) - 1]  # steps 128..149 of the second episode, then padding
    valid = STEPS - 128
    assert last["episode"][0] == 1 and last["step"][:valid].tolist() == list(range(128, STEPS))
    assert np.array_equal(last["frames"][:valid], frames[128:]) and not last["frames"][valid:].any()
    assert last["valid"].sum() == valid and last["done"][valid - 1] and not last["done"][: valid - 1].any()
    assert last["action"][:valid].tolist() == [int(read_row(data_world.episodes[1], "action/value", t)) for t in range(128, STEPS)]
    assert (last["actor"][:valid] == 1).all() and (last["actor"][valid:] == -1).all()  # the random agent
    assert attrs["length"] == STEPS


def test_a_format2_dataset_gives_the_same_windows(data_world: DataWorld, tmp_path: Path) -> None:
    downgrade(data_world.dataset, tmp_path / "v2")
    old = WindowReader(LocalDataset(tmp_path / "v2"), SPEC, verify=True)
    assert not any((tmp_path / "v2").glob("frames"))
    _same(old, WindowReader(LocalDataset(data_world.dataset), SPEC))
    # The observation after the last action, as one more position: from the index row (2), a block (3), the spool.
    spec = WindowSpec(16, stride=16, pad=True, final_observation=True)
    final = WindowReader(LocalDataset(tmp_path / "v2"), spec, verify=True)
    _same(final, WindowReader(LocalDataset(data_world.dataset), spec, verify=True))
    _same(final, WindowReader(SpoolDir(data_world.spool), spec, verify=True))
    last = final[len(final) - 1]  # steps 144..149, then the final observation (step 150), then padding
    _, final_frame, _ = spool_frames(data_world.episodes[1])
    assert last["step"][:8].tolist() == [*range(144, STEPS + 1), -1]
    assert last["valid"].tolist()[:8] == [True] * 6 + [False] * 2 and last["final"].nonzero()[0].tolist() == [6]
    assert np.array_equal(last["frames"][6], final_frame) and last["done"][5] and not last["frames"][7:].any()


def test_windows_cross_episodes_only_when_asked(data_world: DataWorld) -> None:
    spec = WindowSpec(64, cross_episodes=True)
    reader = WindowReader(LocalDataset(data_world.dataset), spec)
    assert len(reader) == 2 * STEPS - 64 + 1
    w = reader[STEPS - 10]
    assert w["first"].nonzero()[0].tolist() == [10] and w["done"][9] and w["episode"].tolist() == [0] * 10 + [1] * 54
    assert len(WindowReader(LocalDataset(data_world.dataset), WindowSpec(64))) == 2 * (STEPS - 64 + 1)


def test_batches_are_seeded_and_stacked(data_world: DataWorld) -> None:
    reader = WindowReader(SpoolDir(data_world.spool), WindowSpec(8, stride=8))
    first = [b["step"][:, 0].tolist() + b["episode"][:, 0].tolist() for b in reader.batches(5, seed=3)]
    again = [b["step"][:, 0].tolist() + b["episode"][:, 0].tolist() for b in reader.batches(5, seed=3)]
    other = [b["step"][:, 0].tolist() + b["episode"][:, 0].tolist() for b in reader.batches(5, seed=3, epoch=1)]
    assert first == again != other
    batch = next(reader.batches(5, shuffle=False))
    assert batch["frames"].shape == (5, 8, 210, 160, 3) and batch["frames"].dtype == np.uint8
    assert batch["step"][:, 0].tolist() == [0, 8, 16, 24, 32]
    assert sum(len(b["step"]) for b in reader.batches(5, drop_last=True)) == len(reader) // 5 * 5


def test_selection_by_fields_keys_and_actor(data_world: DataWorld) -> None:
    source = LocalDataset(data_world.dataset)
    everything = WindowReader(source, SPEC)
    assert len(everything.episode_ids) == 2
    first = everything.episode_ids[0]
    assert WindowReader(source, SPEC, Select(episodes=(first[:6],))).episode_ids == (first,)
    assert WindowReader(source, SPEC, Select(episodes=("#1",))).episode_ids == everything.episode_ids[1:]
    assert WindowReader(source, SPEC, Select(config=CONFIG, where={"player": ["test", "x"]})).episode_ids == everything.episode_ids
    assert WindowReader(source, SPEC, Select(config="ALE/Pong-v5")).episode_ids == ()
    assert WindowReader(source, SPEC, Select(where={"collector": "human"})).episode_ids == ()
    assert WindowReader(source, SPEC, Select(at_least={"active_fraction": 0.5})).episode_ids == ()  # agents have none
    assert WindowReader(source, SPEC, Select(at_most={"length": STEPS})).episode_ids == everything.episode_ids
    assert len(WindowReader(source, SPEC, Select(actor="agent"))) == len(everything)
    assert len(WindowReader(SpoolDir(data_world.spool), SPEC, Select(actor="human"))) == 0
    assert WindowReader(source, SPEC, Select(where={"study": "s1"})).episode_ids == ()  # not a study's play
    with pytest.raises(DatasetError, match="no episode in .* has the field 'handedness'"):
        WindowReader(source, SPEC, Select(where={"handedness": "left"}))
    with pytest.raises(DatasetError, match="actor 'robot'"):
        Select(actor="robot")


def test_verify_names_a_frame_that_does_not_match_its_hash(data_world: DataWorld, tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    bad = copy_episode(data_world.episodes[0], spool)
    frame = read_row(bad, "obs/frame", 40)
    rewrite_rows(bad, "obs/frame", 40, 255 - frame)  # the frame changes, its recorded hash does not
    assert len(WindowReader(SpoolDir(spool), WindowSpec(16))[30]["frames"]) == 16  # unverified: read as stored
    with pytest.raises(CorruptEpisodeError, match="the frame of step 40 does not match its recorded hash"):
        WindowReader(SpoolDir(spool), WindowSpec(16), verify=True)[30]


def test_a_reader_pickles_without_its_open_episodes(data_world: DataWorld) -> None:
    reader = WindowReader(SpoolDir(data_world.spool), SPEC)
    before = reader[3]
    assert reader._open is not None and reader._open.episodes
    copy = pickle.loads(pickle.dumps(reader))
    assert copy._open is None
    assert all(np.array_equal(before[k], v) for k, v in copy[3].items())


def test_hub_streams_the_dataset_without_downloading_it(data_world: DataWorld, hub: object, tmp_path: Path) -> None:
    seed_hub(hub, data_world, "someone/breakout")
    streamed = WindowReader(HubDataset("someone/breakout", endpoint=hub.endpoint), SPEC, verify=True)  # type: ignore[attr-defined]
    _same(streamed, WindowReader(LocalDataset(data_world.dataset), SPEC))
    cached = [str(p) for p in (Path(constants.HF_HUB_CACHE) / "datasets--someone--breakout").rglob("*.parquet")]
    assert cached and all("/meta/episodes/" in p for p in cached), cached  # data shards were read by range only


def test_the_core_imports_without_torch(tmp_path: Path) -> None:
    code = ("import sys\nclass NoTorch:\n    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'torch' or name.startswith('torch.'):\n            raise ImportError('torch blocked')\n"
            "sys.meta_path.insert(0, NoTorch())\nimport gymrec.data\nfrom gymrec.data import WindowReader\n"
            "assert 'torch' not in sys.modules\ntry:\n    import gymrec.data.torch\nexcept ImportError as e:\n"
            "    print('blocked', e)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0 and "blocked torch blocked" in done.stdout, done.stderr[-2000:]
