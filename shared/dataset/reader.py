"""Episodes in gymrec's dataset layout (``shared.dataset.layout``, formats 2 and 3): a local directory or a Hub repo.

Reading one episode fetches only what holds it: ``meta/info.json`` (the format check), the index
shards (one small parquet per upload batch and config) and, of the one data shard holding its rows
(and in format 3 the one frames shard holding its blocks), only the parquet footer and the row
groups overlapping the episode (HTTP range reads on the Hub). A Hub repo works for anyone's public
dataset; the token is optional.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import numpy as np
import pyarrow as pa
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download
from PIL import Image

from gymrec.shared.dataset import layout
from gymrec.shared.dataset.blocks import BLOCK_FRAMES
from gymrec.shared.dataset.frames import FrameStore, open_shard, read_rows
from gymrec.shared.dataset.hub_words import hub_call
from gymrec.shared.dataset.index import DatasetIndex, IndexEntry
from gymrec.shared.errors import (
    CorruptEpisodeError,
    DatasetError,
    EntryNotFoundError,
)
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.schema import row_hash
from gymrec.shared.spool.sources import EpisodeSource, RecordedSteps


class Files(Protocol):
    """Where the dataset's files come from."""

    @property
    def where(self) -> str: ...

    def fetch(self, path_in_repo: str) -> Path: ...

    def open(self, path_in_repo: str) -> BinaryIO:
        """A seekable reader of one file: a Hub file is read by byte ranges, never downloaded whole."""

    def info(self) -> dict[str, Any]: ...

    def index_files(self) -> list[str]: ...




def _checked(found: dict[str, Any] | None, where: str, v1_files: bool) -> dict[str, Any]:
    problem = layout.version_problem(found, where, v1_files)
    if problem is not None:
        raise DatasetError(problem, "use the gymrec version that wrote it")
    if found is None:
        raise DatasetError(f"{where} is not a gymrec dataset (no {layout.INFO_PATH})", "pass a gymrec dataset")
    return found


@dataclass(frozen=True)
class LocalFiles:
    root: Path

    @property
    def where(self) -> str:
        return str(self.root)

    def fetch(self, path_in_repo: str) -> Path:
        path = self.root / path_in_repo
        if not path.is_file():
            raise CorruptEpisodeError(f"{self.root}: {path_in_repo} is missing", "the dataset is incomplete")
        return path

    def open(self, path_in_repo: str) -> BinaryIO:
        return self.fetch(path_in_repo).open("rb")

    def info(self) -> dict[str, Any]:
        path = self.root / layout.INFO_PATH
        try:
            return _checked(layout.parse_info(path.read_bytes(), str(path)), self.where, False)
        except FileNotFoundError:
            folder = self.root / layout.INDEX_DIR
            v1 = folder.is_dir() and any(layout.is_v1_meta_path(f"{layout.INDEX_DIR}/{p.name}") for p in folder.iterdir())
            return _checked(None, self.where, v1)

    def index_files(self) -> list[str]:
        folder = self.root / layout.INDEX_DIR
        found = (str(p.relative_to(self.root)) for p in folder.rglob("*" + layout.SHARD_SUFFIX)) if folder.is_dir() else ()
        return sorted(p for p in found if layout.is_index_path(p))


@dataclass(frozen=True)
class HubFiles:
    repo_id: str
    endpoint: str | None
    token: str | None
    local_dir: Path | None = None

    @property
    def where(self) -> str:
        return self.repo_id

    def _download(self, path_in_repo: str) -> Path:
        with hub_call(self.repo_id, self.endpoint):
            return Path(
                hf_hub_download(
                    self.repo_id, path_in_repo, repo_type="dataset", endpoint=self.endpoint, token=self.token,
                    local_dir=self.local_dir,
                )  # fmt: skip
            )

    def fetch(self, path_in_repo: str) -> Path:
        try:
            return self._download(path_in_repo)
        except EntryNotFoundError as e:
            raise CorruptEpisodeError(f"{self.repo_id}: {path_in_repo} is missing", "the dataset is incomplete") from e

    def open(self, path_in_repo: str) -> BinaryIO:
        """HTTP range reads through ``HfFileSystem``: a parquet reader fetches the footer and its row groups only."""
        fs = HfFileSystem(endpoint=self.endpoint, token=self.token)
        try:
            with hub_call(self.repo_id, self.endpoint):
                return cast(BinaryIO, fs.open(f"datasets/{self.repo_id}/{path_in_repo}", "rb", block_size=1 << 20))
        except (EntryNotFoundError, FileNotFoundError) as e:
            raise CorruptEpisodeError(f"{self.repo_id}: {path_in_repo} is missing", "the dataset is incomplete") from e

    def _tree(self, folder: str, recursive: bool) -> list[str]:
        api = HfApi(endpoint=self.endpoint, token=self.token)
        try:
            with hub_call(self.repo_id, self.endpoint):
                return [e.path for e in api.list_repo_tree(self.repo_id, folder, recursive=recursive, repo_type="dataset")]
        except EntryNotFoundError:
            return []

    def info(self) -> dict[str, Any]:
        try:
            data = self._download(layout.INFO_PATH).read_bytes()
        except EntryNotFoundError:
            v1 = any(layout.is_v1_meta_path(p) for p in self._tree(layout.INDEX_DIR, recursive=False))
            return _checked(None, self.where, v1)
        return _checked(layout.parse_info(data, f"{self.repo_id}:{layout.INFO_PATH}"), self.where, False)

    def index_files(self) -> list[str]:
        return sorted(p for p in self._tree(layout.INDEX_DIR, recursive=True) if layout.is_index_path(p))


def _decode_image(data: bytes, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image)
        return array.astype(dtype, copy=False).reshape(shape)
    except (OSError, ValueError) as e:
        raise CorruptEpisodeError(f"{where}: an observation image cannot be decoded ({e})") from e


def _episode_rows(source: BinaryIO, entry: IndexEntry, where: str) -> pa.Table:
    """Rows [row_start, row_start + row_count) of a data shard, reading only the row groups holding them."""
    try:
        shard = open_shard(source)
    except (pa.ArrowException, OSError) as e:
        raise CorruptEpisodeError(f"{where}: {entry.data_file} is not readable parquet ({e})") from e
    table = read_rows(shard.parquet, shard.starts, entry.row_start, entry.row_count, None, where, entry.data_file)
    ids = set(table.column("episode_id").unique().to_pylist()) if "episode_id" in table.column_names else set()
    if ids != {entry.episode_id}:
        raise CorruptEpisodeError(f"{where}: the index points at rows of {sorted(ids)[:2]} in {entry.data_file}",
                                  "the dataset is damaged")  # fmt: skip
    return table


class DatasetSource(EpisodeSource):
    """One episode of a dataset; its rows are read once, frames are decoded on demand: from the step rows'
    images (format 2) or from the frame blocks (format 3, ``shared.dataset.frames``)."""

    def __init__(self, index: DatasetIndex, episode_id: str) -> None:
        self.where = f"{index.where}:{episode_id}"
        row = index.row(episode_id)
        try:
            meta = json.loads(row[layout.INDEX_ATTRS_COLUMN])
            self._final_extra: dict[str, Any] = json.loads(row[layout.INDEX_FINAL_EXTRA_COLUMN] or "{}")
        except (ValueError, TypeError) as e:
            raise CorruptEpisodeError(f"{self.where}: unreadable attributes in the index") from e
        # The dataset's own fields (env_slug, observation_format, ...) land in ``extra``.
        self.attrs = EpisodeAttrs.from_dict(meta, self.where, sealed=True, expected_id=episode_id)
        self.image_key = self.attrs.image_key
        final = row[layout.INDEX_FINAL_COLUMN]
        self._final_png: bytes = final["bytes"] if isinstance(final, dict) else final
        self._final_hash = row[layout.INDEX_FINAL_HASH_COLUMN]
        entry = index.entries[episode_id]
        self._index = index
        self._blocks = entry.frames is not None
        self.cheap_frames = self._blocks  # replay checks every stored frame's hash by default
        with index.files.open(entry.data_file) as shard:
            self.table: pa.Table = _episode_rows(shard, entry, self.where)

    def _column(self, name: str) -> pa.ChunkedArray:
        if name not in self.table.column_names:
            raise CorruptEpisodeError(f"{self.where}: the parquet has no {name!r} column", "the dataset is damaged")
        return self.table.column(name)

    def _leaf_rows(self, name: str, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        return np.asarray(self._column(name).to_pylist(), dtype=dtype).reshape(-1, *shape)

    def steps(self) -> RecordedSteps:
        desc = self.attrs.action_space
        hashes: dict[str, list[int]] = {}
        for leaf in self.obs_leaves:
            if leaf.name == self.image_key:
                rows = self._column(layout.OBS_HASH_COLUMN).to_pylist()
                final = self._final_hash
            else:  # small leaves are stored as values: hash them as the spool would
                rows = [row_hash(r) for r in self._leaf_rows(leaf.name, leaf.dtype, leaf.shape)]
                final_value = self._final_extra.get(leaf.name)
                final = None if final_value is None else row_hash(np.asarray(final_value, dtype=leaf.dtype).reshape(leaf.shape))
            if final is None:
                raise CorruptEpisodeError(f"{self.where}: the meta has no final value for {leaf.name!r}", "the dataset is damaged")
            hashes[leaf.name] = [*rows, int(final)]
        steps = RecordedSteps(
            actions=[layout.decode_action_value(desc, v) for v in self._column(layout.ACTION_COLUMN).to_pylist()],
            reward=[float(x) for x in self._column("reward").to_pylist()],
            terminated=[bool(x) for x in self._column("terminated").to_pylist()],
            truncated=[bool(x) for x in self._column("truncated").to_pylist()],
            obs_hashes=hashes,
        )
        for name, rows in (("action", steps.actions), ("reward", steps.reward), ("terminated", steps.terminated),
                           ("truncated", steps.truncated), *((f"hash of {k}", v[:-1]) for k, v in hashes.items())):  # fmt: skip
            self.check_rows(name, rows, self.length)
        return steps

    def _image_at(self, t: int, leaf_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        if self._blocks:
            with FrameStore(self._index) as store:
                return store.episode(self.id).read(t, t + 1)[0].reshape(leaf_shape)
        if t == self.length:
            data = self._final_png
        else:
            cell = self._column(layout.OBS_COLUMN)[t].as_py()
            data = cell["bytes"] if isinstance(cell, dict) else cell
        return _decode_image(data, leaf_shape, dtype, self.where)

    def observation(self, t: int, image: np.ndarray | None = None) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for leaf in self.obs_leaves:
            if leaf.name == self.image_key:
                out[leaf.name] = self._image_at(t, leaf.shape, leaf.dtype) if image is None else image.reshape(leaf.shape)
            elif t == self.length:
                out[leaf.name] = np.asarray(self._final_extra[leaf.name], dtype=leaf.dtype).reshape(leaf.shape)
            else:
                out[leaf.name] = np.asarray(self._column(leaf.name)[t].as_py(), dtype=leaf.dtype).reshape(leaf.shape)
        return out

    def images(self, start: int, stop: int) -> np.ndarray:
        if not self._blocks:
            return super().images(start, stop)
        with FrameStore(self._index) as store:  # the one or two blocks holding them, decoded once
            leaf = next(leaf for leaf in self.obs_leaves if leaf.name == self.image_key)
            return store.episode(self.id).read(start, stop).reshape(stop - start, *leaf.shape)

    def observations(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        if not self._blocks:
            for t in range(self.length + 1):
                yield t, self.observation(t)
            return
        with FrameStore(self._index) as store:  # block by block: each block is read and decoded once
            frames = store.episode(self.id)
            for start in range(0, len(frames), BLOCK_FRAMES):
                block = frames.read(start, min(start + BLOCK_FRAMES, len(frames)))
                for i, image in enumerate(block):
                    yield start + i, self.observation(start + i, image)


def is_dataset_dir(path: Path) -> bool:
    """A gymrec dataset directory of any format (format 1 is refused with one line when read)."""
    return (path / layout.INFO_PATH).is_file() or (path / layout.INDEX_DIR).is_dir()
