"""Dataset format 3: frame blocks round-trip, windows read only their blocks, verification catches a changed
frame, a Hub repo is read without downloading it, and format 2 converts losslessly (or is refused)."""

from __future__ import annotations

import io
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from uploader_helpers import clean_env, record_episode, run_uploader

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES, BlockCodec, decode_block, encode_block
from gymrec.shared.dataset.frames import FrameStore
from gymrec.shared.dataset.index import DatasetIndex
from gymrec.shared.dataset.reader import DatasetSource, Files, HubFiles, LocalFiles
from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool.schema import row_hash
from tests.format2 import downgrade, publish

BREAKOUT = "BreakoutNoFrameskip-v4"


@pytest.fixture(scope="module")
def datasets_(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A format-3 dataset of two Breakout episodes (several blocks each), and the same as format 2."""
    root = tmp_path_factory.mktemp("format3")
    spool = root / "spool"
    spool.mkdir()
    sealed = [record_episode(spool, BREAKOUT, 700, seed=1), record_episode(spool, BREAKOUT, 130, seed=2)]
    publish(sealed, root / "v3", root / "work")
    downgrade(root / "v3", root / "v2")
    return {"v3": root / "v3", "v2": root / "v2", "root": root}


def _all_frames(files: Files) -> dict[str, np.ndarray]:
    index = DatasetIndex(files)
    with FrameStore(index) as store:
        return {eid: store.episode(eid, verify=True).read(0, index.entries[eid].row_count + 1) for eid in index.episode_ids()}


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".gymrec.lock"}


@pytest.mark.parametrize(("shape", "colours"), [((210, 160, 3), 16), ((30, 40, 3), 5000), ((7, 5, 1), 256), ((3, 3), 256)])
@pytest.mark.parametrize("n", [1, 5, BLOCK_FRAMES])
def test_blocks_round_trip(shape: tuple[int, ...], colours: int, n: int) -> None:
    """Palette (<= 256 colours) or not, XOR or not: every block decodes to its very frames."""
    rng = np.random.default_rng(n)
    frames = np.zeros((n, *shape), np.uint8)
    frames[:] = (rng.integers(0, 256, (colours, shape[-1]), dtype=np.uint8)[rng.integers(0, colours, shape[:-1])]
                 if len(shape) == 3 and shape[-1] == 3 else rng.integers(0, 256, shape, dtype=np.uint8))  # a background...
    for i in range(n):  # ...and something that moves
        frames[i].reshape(-1)[i % frames[i].size] ^= 0x5A
    codec = BlockCodec()
    data = codec.encode(frames)
    assert np.array_equal(codec.decode(data, n, shape), frames)
    assert np.array_equal(decode_block(encode_block(frames), n, shape, np.uint8), frames)
    with pytest.raises(CorruptEpisodeError, match="holds"):
        codec.decode(data, n + 1, shape)
    with pytest.raises(CorruptEpisodeError, match="unknown flags"):
        codec.decode(b"not zstd" + data, n, shape)
    with pytest.raises(CorruptEpisodeError, match="decompress"):
        codec.decode(data[:-8], n, shape)  # truncated
    with pytest.raises(ValueError):
        codec.encode(np.zeros((BLOCK_FRAMES + 1, *shape), np.uint8))


@pytest.mark.parametrize("shape", [(210, 160, 3), (45, 61, 3), (240, 320, 3)])
def test_palette_blocks_map_moving_pixels_and_whole_pictures(shape: tuple[int, ...]) -> None:
    """A sprite that moves and takes a colour frame 0 lacks (only its pixels are mapped), a block whose
    whole picture changes (every pixel mapped, two at a time when many), decoded into a given array."""
    rng = np.random.default_rng(7)
    palette = rng.integers(0, 256, (200, 3), dtype=np.uint8)
    sparse = np.repeat(palette[rng.integers(0, 8, shape[:2])][np.newaxis], BLOCK_FRAMES, axis=0)
    for i in range(1, BLOCK_FRAMES):
        sparse[i, i % shape[0], : i % 7 + 1] = palette[100 + i]  # new colours, then left behind
    dense = palette[rng.integers(0, 200, (BLOCK_FRAMES, *shape[:2]))]
    codec = BlockCodec()
    for frames, flags in ((sparse, 3), (dense, 2)):
        data = codec.encode(frames)
        out = np.empty_like(frames)
        assert data[0] == flags and codec.decode(data, len(frames), shape, out=out) is out
        assert np.array_equal(out, frames)


class CountingCodec(BlockCodec):
    def __init__(self) -> None:
        super().__init__()
        self.decoded: list[int] = []

    def decode(self, data: bytes | memoryview, n: int, shape: tuple[int, ...], dtype: Any = np.uint8,
               out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        self.decoded.append(n)
        return super().decode(data, n, shape, dtype, out)


def test_a_window_reads_one_or_two_blocks_and_the_final_frame_is_last(datasets_: dict[str, Path]) -> None:
    index = DatasetIndex(LocalFiles(datasets_["v3"]))
    assert index.format == layout.FORMAT_VERSION
    long_id = max(index.episode_ids(), key=lambda e: index.entries[e].row_count)
    with FrameStore(index) as store:
        store.codec = CountingCodec()
        frames = store.episode(long_id, verify=True)
        whole = frames.read(0, len(frames))
        store.codec.decoded.clear()
        assert np.array_equal(frames.read(130, 190), whole[130:190]) and len(store.codec.decoded) == 1  # in block 2
        store.codec.decoded.clear()
        assert np.array_equal(frames.read(100, 164), whole[100:164]) and len(store.codec.decoded) == 2  # blocks 1-2
        assert frames.read(len(frames) - 1, len(frames)).shape == (1, 210, 160, 3)
        hashes = frames.hashes()
    row = index.row(long_id)
    assert len(hashes) == len(whole) == row["length"] + 1 and int(hashes[-1]) == row[layout.INDEX_FINAL_HASH_COLUMN]
    assert all(row_hash(f) == int(h) for f, h in zip(whole, hashes, strict=True))
    with pytest.raises(IndexError):
        FrameStore(index).episode(long_id).read(0, len(frames) + 1)
    # the step rows stay loadable scalars, with a preview image at each block's first step
    table = pq.read_table(datasets_["v3"] / row[layout.INDEX_DATA_FILE_COLUMN])
    assert layout.OBS_COLUMN not in table.column_names
    previews = [i for i, cell in enumerate(table.column(layout.PREVIEW_COLUMN).to_pylist()) if cell is not None]
    assert len(previews) == sum(-(-index.entries[e].row_count // BLOCK_FRAMES) for e in index.episode_ids())


def _rewrite_block(dataset: Path, eid: str, change: Any) -> None:
    """Replace one episode's block 1 (steps 64..127) with ``change(old bytes)``, keeping the row groups."""
    index = DatasetIndex(LocalFiles(dataset))
    location = index.entries[eid].frames
    assert location is not None
    path = dataset / location.file
    table = pq.read_table(path)
    data = table.column(layout.BLOCK_DATA_COLUMN).to_pylist()
    data[location.row_start + 1] = change(data[location.row_start + 1], location.shape)
    table = table.set_column(table.schema.get_field_index(layout.BLOCK_DATA_COLUMN), layout.BLOCK_DATA_COLUMN, pa.array(data, pa.binary()))
    pq.write_table(table, path, row_group_size=layout.FRAMES_ROW_GROUP_BLOCKS)


def test_verify_catches_a_changed_frame_and_a_flipped_byte(datasets_: dict[str, Path], tmp_path: Path) -> None:
    from gymrec.replay.verify import VerifyOptions, verify

    dataset = tmp_path / "v3"
    shutil.copytree(datasets_["v3"], dataset)
    index = DatasetIndex(LocalFiles(dataset))
    eid = max(index.episode_ids(), key=lambda e: index.entries[e].row_count)

    def one_pixel(data: bytes, shape: tuple[int, ...]) -> bytes:
        frames = decode_block(data, BLOCK_FRAMES, shape)
        frames[6, 100, 80, 0] ^= 1  # step 70: still a valid block, only the hash can tell
        return encode_block(frames)

    _rewrite_block(dataset, eid, one_pixel)
    index = DatasetIndex(LocalFiles(dataset))
    with FrameStore(index) as store:
        assert store.episode(eid).read(64, 128).shape[0] == 64  # without verify the block decodes
        with pytest.raises(CorruptEpisodeError, match="frame 70 does not match"):
            store.episode(eid, verify=True).read(60, 80)
    result = verify(DatasetSource(index, eid), VerifyOptions(diff_dir=tmp_path / "diffs"))  # replay checks by default
    assert result.status == "diverged" and result.divergence is not None and result.divergence.step == 70

    def flip(data: bytes, shape: tuple[int, ...]) -> bytes:
        middle = len(data) // 2
        return data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]

    _rewrite_block(dataset, eid, flip)
    with FrameStore(DatasetIndex(LocalFiles(dataset))) as store, pytest.raises(CorruptEpisodeError):
        store.episode(eid, verify=True).read(64, 128)


def test_a_hub_repo_is_read_by_ranges_without_downloading_it(datasets_: dict[str, Path], hub: Any, tmp_path: Path) -> None:
    hub.seed_repo("someone/breakout3", _tree(datasets_["v3"]))
    downloads = tmp_path / "downloads"
    files = HubFiles("someone/breakout3", hub.endpoint, None, downloads)
    local = _all_frames(LocalFiles(datasets_["v3"]))
    index = DatasetIndex(files)
    eid = max(local, key=lambda e: len(local[e]))
    with FrameStore(index) as store:
        window = store.episode(eid, verify=True).read(500, 564)
    assert np.array_equal(window, local[eid][500:564])
    fetched = sorted(str(p.relative_to(downloads)) for p in downloads.rglob("*.parquet"))
    assert fetched and all(p.startswith(layout.INDEX_DIR) for p in fetched), fetched  # data and frames: ranges only


def test_format2_converts_losslessly_and_a_rerun_has_nothing_to_do(datasets_: dict[str, Path], tmp_path: Path) -> None:
    dataset = tmp_path / "v2"
    shutil.copytree(datasets_["v2"], dataset)
    before = DatasetIndex(LocalFiles(dataset))
    assert before.format == 2 and all(e.frames is None for e in before.entries.values())
    attributes = {e: before.row(e)[layout.INDEX_ATTRS_COLUMN] for e in before.episode_ids()}
    done = run_uploader(["compact", "--local-dir", str(dataset), "--to-format", "3"], tmp_path, clean_env(HOME=str(tmp_path)))
    original = _all_frames(LocalFiles(datasets_["v3"]))
    total = sum(len(f) for f in original.values())
    assert done.returncode == 0 and f"to format 3: 1 shards, 2 episodes, {total} frames, every frame hash equal" in done.stdout, done.stderr
    converted = _all_frames(LocalFiles(dataset))
    assert converted.keys() == original.keys()
    assert all(np.array_equal(converted[e], original[e]) for e in original)  # every frame, the final ones included
    after = DatasetIndex(LocalFiles(dataset))
    assert after.format == 3 and {e: after.row(e)[layout.INDEX_ATTRS_COLUMN] for e in original} == attributes
    assert not any(layout.OBS_COLUMN in pq.read_schema(p).names for p in (dataset / layout.DATA_DIR).rglob("*.parquet"))
    assert "format 3" in (dataset / layout.CARD_PATH).read_text()
    again = run_uploader(["compact", "--local-dir", str(dataset), "--to-format", "3"], tmp_path, clean_env(HOME=str(tmp_path)))
    assert again.returncode == 0 and "already format 3" in again.stdout


def test_a_hub_repo_converts_in_place(datasets_: dict[str, Path], hub: Any, tmp_path: Path) -> None:
    from gymrec.uploader.convert import ConvertOptions
    from gymrec.uploader.hub import HubPusher
    from gymrec.uploader.outage import RetryPolicy

    hub.seed_repo("tester/breakout2", _tree(datasets_["v2"]))
    pusher = HubPusher(hub.endpoint, "hf_test_token", False, RetryPolicy(), threading.Event())
    original = _all_frames(LocalFiles(datasets_["v3"]))
    assert pusher.to_format3("tester/breakout2", tmp_path, ConvertOptions(workers=2)) == (1, 2, sum(len(f) for f in original.values()))
    files = hub.files("tester/breakout2")
    assert json.loads(files[layout.INFO_PATH])["format_version"] == 3
    assert not any(p.startswith(layout.DATA_DIR) and layout.OBS_COLUMN in pq.read_schema(io.BytesIO(b)).names
                   for p, b in files.items() if p.endswith(".parquet"))  # fmt: skip
    converted = _all_frames(HubFiles("tester/breakout2", hub.endpoint, None, tmp_path / "dl"))
    assert all(np.array_equal(converted[e], original[e]) for e in original)


def test_refusals_are_one_line_and_change_nothing(datasets_: dict[str, Path], tmp_path: Path) -> None:
    env = clean_env(HOME=str(tmp_path))
    dataset = tmp_path / "v2"
    shutil.copytree(datasets_["v2"], dataset)
    spool = tmp_path / "spool"
    spool.mkdir()
    sealed = record_episode(spool, BREAKOUT, 20, seed=5)
    before = _tree(dataset)
    upload = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset)], tmp_path, env)
    lines = upload.stderr.strip().splitlines()
    assert upload.returncode == 2 and len(lines) == 1 and "compact --to-format 3" in lines[0], upload.stderr
    assert sealed.is_dir() and _tree(dataset) == before
    # a format-2 shard whose final frame does not match its hash is not converted, and nothing changes
    index_file = next((dataset / layout.INDEX_DIR).rglob("*.parquet"))
    table = pq.read_table(index_file)
    hashes = table.column(layout.INDEX_FINAL_HASH_COLUMN).to_pylist()
    column = table.schema.get_field_index(layout.INDEX_FINAL_HASH_COLUMN)
    pq.write_table(table.set_column(column, layout.INDEX_FINAL_HASH_COLUMN, pa.array([hashes[0] ^ 1, *hashes[1:]], pa.uint64())), index_file)
    before = _tree(dataset)
    damaged = run_uploader(["compact", "--local-dir", str(dataset), "--to-format", "3"], tmp_path, env)
    lines = damaged.stderr.strip().splitlines()
    assert damaged.returncode == 2 and len(lines) == 1 and "does not match its recorded hash" in lines[0], damaged.stderr
    assert _tree(dataset) == before and not any((dataset / ".staging").glob("*"))
    foreign = tmp_path / "foreign"
    (foreign / layout.META_DIR).mkdir(parents=True)
    (foreign / layout.INFO_PATH).write_text('{"format_version": 2, "codebase": "someone-else"}')
    (foreign / "data.parquet").write_bytes(b"PAR1")
    theirs = run_uploader(["compact", "--local-dir", str(foreign), "--to-format", "3"], tmp_path, env)
    lines = theirs.stderr.strip().splitlines()
    assert theirs.returncode == 2 and len(lines) == 1 and "someone else" in lines[0], theirs.stderr
