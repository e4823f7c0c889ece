"""Episodes in gymrec's dataset layout (``uploader.layout``): a local directory or a Hub repo.

Only the files of the episodes asked for are read: ``meta/episodes/<id>.json``, the episode's
parquet and its final image. A Hub repo works for anyone's public dataset; the token is optional.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    HTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from PIL import Image

from gymrec.replay.sources import EpisodeSource, RecordedSteps
from gymrec.shared.errors import (
    AmbiguousEpisodeError,
    AuthError,
    CorruptEpisodeError,
    DatasetError,
    EpisodeNotFoundError,
    HubUnavailableError,
    RepoIdError,
    RepoNotFoundError,
)
from gymrec.shared.attrs import EpisodeAttrs
from gymrec.shared.schema import row_hash
from gymrec.uploader import layout

MAX_INDEX_DIGITS = 6  # a key of at most this many digits is an index, not an id prefix


class Files(Protocol):
    """Where the dataset's files come from."""

    @property
    def where(self) -> str: ...

    def fetch(self, path_in_repo: str) -> Path: ...

    def episode_ids(self) -> list[str]: ...


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

    def episode_ids(self) -> list[str]:
        folder = self.root / layout.EPISODES_DIR
        if not folder.is_dir():
            raise DatasetError(f"{self.root} is not a gymrec dataset (no {layout.EPISODES_DIR}/)", "pass a dataset directory")
        ids = (layout.episode_id_of_meta(f"{layout.EPISODES_DIR}/{p.name}") for p in folder.iterdir())
        return sorted(i for i in ids if i)


@dataclass(frozen=True)
class HubFiles:
    repo_id: str
    endpoint: str | None
    token: str | None
    local_dir: Path | None = None

    @property
    def where(self) -> str:
        return self.repo_id

    def _translate(self, e: Exception, what: str) -> Exception:
        if isinstance(e, RepositoryNotFoundError):
            return RepoNotFoundError(f"dataset {self.repo_id!r} does not exist or is not visible", "check --repo-id (and HF_TOKEN for a private repo)")
        if isinstance(e, HFValidationError):
            return RepoIdError(f"{self.repo_id!r} is not a valid repo id", "use the form owner/name")
        if isinstance(e, LocalEntryNotFoundError):  # could not reach the Hub and nothing is cached
            return HubUnavailableError(f"cannot reach the Hub for {self.repo_id}", "check --endpoint / HF_ENDPOINT and the network")
        if isinstance(e, EntryNotFoundError | RevisionNotFoundError):
            return CorruptEpisodeError(f"{self.repo_id}: {what} is missing", "the dataset is incomplete")
        if isinstance(e, HfHubHTTPError) and e.response is not None and e.response.status_code in (401, 403):
            return AuthError(f"the Hub refused access to {self.repo_id}", "set HF_TOKEN to a token that can read it")
        return HubUnavailableError(f"cannot reach the Hub for {self.repo_id}: {e}", "check --endpoint / HF_ENDPOINT and the network")

    def fetch(self, path_in_repo: str) -> Path:
        try:
            return Path(
                hf_hub_download(
                    self.repo_id, path_in_repo, repo_type="dataset", endpoint=self.endpoint, token=self.token,
                    local_dir=self.local_dir,
                )  # fmt: skip
            )
        except (HfHubHTTPError, HFValidationError, HTTPError, OSError) as e:
            raise self._translate(e, path_in_repo) from e

    def episode_ids(self) -> list[str]:
        api = HfApi(endpoint=self.endpoint, token=self.token)
        try:
            entries = list(api.list_repo_tree(self.repo_id, layout.EPISODES_DIR, repo_type="dataset"))
        except EntryNotFoundError as e:
            raise DatasetError(f"{self.repo_id} holds no gymrec episodes (no {layout.EPISODES_DIR}/)") from e
        except (HfHubHTTPError, HFValidationError, HTTPError, OSError) as e:
            raise self._translate(e, layout.EPISODES_DIR) from e
        return sorted(i for i in (layout.episode_id_of_meta(entry.path) for entry in entries) if i)


def resolve_ids(files: Files, key: str | None, all_: bool) -> list[str]:
    """The episode ids a key names: an id, a unique prefix, or an index (in id order); or all of them.

    ``#N`` is always an index. A bare number is an index only when no episode id starts with it:
    uuids often begin with digits, and a prefix must never be silently read as a position.
    """
    ids = files.episode_ids()
    if all_ or key is None:
        return ids
    explicit = key.startswith("#") and key[1:].isdigit()
    matches = [] if explicit else [i for i in ids if i.startswith(key.lower())]
    as_index = key[1:] if explicit else key
    if as_index.isdigit() and len(as_index) <= MAX_INDEX_DIGITS and (explicit or not matches):
        index = int(as_index)
        if index >= len(ids):
            raise EpisodeNotFoundError(f"{files.where} holds {len(ids)} episodes; there is no index {index}", "use 0..N-1 or an id")
        return [ids[index]]
    if not matches:
        raise EpisodeNotFoundError(f"no episode in {files.where} matches {key!r}", "check the id or prefix")
    if len(matches) > 1:
        raise AmbiguousEpisodeError(f"{key!r} matches {len(matches)} episodes in {files.where}", "give more of the id")
    return matches


def _decode_image(data: bytes, shape: tuple[int, ...], dtype: np.dtype, where: str) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as image:
            array = np.asarray(image)
        return array.astype(dtype, copy=False).reshape(shape)
    except (OSError, ValueError) as e:
        raise CorruptEpisodeError(f"{where}: an observation image cannot be decoded ({e})") from e


class DatasetSource(EpisodeSource):
    """One episode of a dataset; the parquet is read once, frames are decoded on demand."""

    def __init__(self, files: Files, episode_id: str) -> None:
        self.files = files
        self.where = f"{files.where}:{episode_id}"
        try:
            meta = json.loads(files.fetch(layout.meta_path(episode_id)).read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptEpisodeError(f"{self.where}: unreadable {layout.meta_path(episode_id)}") from e
        self.attrs = EpisodeAttrs.from_dict(meta, self.where, sealed=True, expected_id=episode_id)
        self.image_key = self.attrs.image_key
        # The dataset's own meta fields (file names, final values) are not episode attributes.
        self.meta: dict[str, Any] = self.attrs.extra
        data_file = str(self.meta.get("data_file") or layout.data_path(self.env_id, episode_id))
        try:
            self.table: pa.Table = pq.read_table(files.fetch(data_file))
        except (pa.ArrowException, OSError) as e:
            raise CorruptEpisodeError(f"{self.where}: {data_file} is not readable parquet ({e})") from e
        self._final_file = str(self.meta.get("final_observation_file") or layout.final_obs_path(episode_id))

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
                final = self.meta.get("final_observation_hash")
            else:  # small leaves are stored as values: hash them as the spool would
                rows = [row_hash(r) for r in self._leaf_rows(leaf.name, leaf.dtype, leaf.shape)]
                final_value = self.meta.get(f"{layout.FINAL_PREFIX}{leaf.name}")
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
        if t == self.length:
            data = self.files.fetch(self._final_file).read_bytes()
        else:
            cell = self._column(layout.OBS_COLUMN)[t].as_py()
            data = cell["bytes"] if isinstance(cell, dict) else cell
        return _decode_image(data, leaf_shape, dtype, self.where)

    def observation(self, t: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for leaf in self.obs_leaves:
            if leaf.name == self.image_key:
                out[leaf.name] = self._image_at(t, leaf.shape, leaf.dtype)
            elif t == self.length:
                out[leaf.name] = np.asarray(self.meta[f"{layout.FINAL_PREFIX}{leaf.name}"], dtype=leaf.dtype).reshape(leaf.shape)
            else:
                out[leaf.name] = np.asarray(self._column(leaf.name)[t].as_py(), dtype=leaf.dtype).reshape(leaf.shape)
        return out

    def observations(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        for t in range(self.length + 1):
            yield t, self.observation(t)


def is_dataset_dir(path: Path) -> bool:
    return (path / layout.EPISODES_DIR).is_dir()
