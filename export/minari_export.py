"""``gymrec-export minari``: recorded episodes as a Minari dataset that ``minari.load_dataset`` loads.

minari 0.5.4 stores image observations as JPEG unless told otherwise (``jpeg_encoding=True`` is
its default), which would silently change the frames. gymrec writes with ``jpeg_encoding=False``
in minari's parquet format (raw arrays, lossless compression), then reads every episode back the
way ``load_dataset`` does and compares each observation's xxh3 with the recorded one: an export
that is not bit-identical is refused, never published.

Memory: minari takes one whole episode per write, so an episode's raw frames are held at once
(Breakout: 100 KB a frame, 30 MB for 300 steps).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from gymrec.export.info import EpisodeInfo, info_of
from gymrec.export.minari_env import EnvDescription, describe_env, requirements
from gymrec.export.progress import ProgressFactory
from gymrec.export.staging import staged
from gymrec.export.walk import each_episode
from gymrec.shared.dataset.select import Job
from gymrec.shared.errors import (
    EpisodeNotFoundError,
    ExportCorruptError,
    ExportEnvError,
    ExportError,
    LossyExportError,
    MinariMissingError,
)
from gymrec.shared.spool.schema import row_hash
from gymrec.shared.spool.sources import EpisodeSource
from gymrec.shared.spool.spaces import OBS_LEAF

log = logging.getLogger(__name__)
MINARI_VERSION = "0.5.4"  # verified lossless with jpeg_encoding=False (tests/test_export_minari.py)
DATA_FORMAT = "parquet"  # lossless (snappy) and needs only pyarrow, which gymrec already has
NAMESPACE_FILE = "namespace_metadata.json"  # minari.namespace.NAMESPACE_METADATA_FILENAME
DATASET_ID = re.compile(r"^([\w.-]+/)*[\w.-]+-v\d+$")  # (namespace/)name-vN, as minari parses it


@dataclass(frozen=True)
class MinariConfig:
    dataset_id: str
    datasets_root: Path  # minari's data path ($MINARI_DATASETS_PATH or ~/.minari/datasets)
    env_id: str | None
    force: bool
    credit_players: bool  # the player's name becomes the dataset author only when asked
    code_permalink: str | None
    source_label: str  # SOURCE as given: for messages on this machine
    published_source: str = ""  # SOURCE as published in the metadata: never a local path


@dataclass(frozen=True)
class MinariResult:
    dataset_id: str
    path: Path
    env_id: str
    episodes: int
    steps: int
    skipped: int
    corrupt: list[str]  # damaged episodes left out, each warned about once
    authors: tuple[str, ...]  # the players credited (only with --author)


def load_minari() -> ModuleType:
    """Import minari, and make sure it is the version whose lossless storage was verified."""
    try:
        minari = importlib.import_module("minari")
        storage = importlib.import_module("minari.dataset.minari_storage")
    except ImportError as e:
        raise MinariMissingError("minari is not installed", f"pip install 'minari=={MINARI_VERSION}'") from e
    installed = importlib.metadata.version("minari")
    if "jpeg_encoding" not in inspect.signature(storage.MinariStorage.new).parameters:
        raise MinariMissingError(f"minari {installed} cannot store images losslessly",
                                 f"pip install 'minari=={MINARI_VERSION}'")
    if installed != MINARI_VERSION:
        log.warning("minari %s is installed; gymrec verified %s (every export is still checked bit for bit)",
                    installed, MINARI_VERSION)
    return minari


def dataset_path(config: MinariConfig) -> Path:
    parse = importlib.import_module("minari.dataset.minari_dataset").parse_dataset_id
    bad = ExportError(f"{config.dataset_id!r} is not a Minari dataset id",
                      "use (namespace/)name-vN, for example gymrec/breakout-human-v0")
    if not DATASET_ID.match(config.dataset_id):  # minari 0.5.4 raises TypeError for a missing -vN
        raise bad
    try:
        parse(config.dataset_id)
    except (ValueError, TypeError) as e:
        raise bad from e
    return (config.datasets_root / config.dataset_id).absolute()  # minari joins relative paths twice


def _stack(rows: list[dict[str, np.ndarray]], single: bool) -> Any:
    leaves = {name: np.stack([r[name] for r in rows]) for name in rows[0]}
    return leaves[OBS_LEAF] if single else leaves


def _actions(actions: list[Any], space: gym.Space) -> Any:
    if isinstance(space, gym.spaces.Dict):
        return {k: np.asarray([a[k] for a in actions], dtype=sub.dtype) for k, sub in space.spaces.items()}
    return np.asarray(actions, dtype=space.dtype)


def _buffer(source: EpisodeSource, info: EpisodeInfo, index: int, env: EnvDescription) -> tuple[Any, dict[str, list[int]]]:
    steps = source.steps()
    rows = [obs for _, obs in source.observations()]
    single = not isinstance(env.observation_space, gym.spaces.Dict)
    return importlib.import_module("minari.data_collector.episode_buffer").EpisodeBuffer(
        id=index,
        seed=info.seed,
        observations=_stack(rows, single),
        actions=_actions(steps.actions, env.action_space),
        rewards=np.asarray(steps.reward, dtype=np.float64),
        terminations=np.asarray(steps.terminated, dtype=np.bool_),
        truncations=np.asarray(steps.truncated, dtype=np.bool_),
    ), steps.obs_hashes


def _episode_meta(info: EpisodeInfo, published_source: str) -> dict[str, Any]:
    return {"gymrec_episode_id": info.episode_id, "gymrec_source": published_source, "env_id": info.env_id,
            "collector": info.collector, "end_reason": info.end_reason, "fps": info.fps, "versions": dict(info.versions)}


def _check_lossless(data_path: Path, hashes: list[dict[str, list[int]]], minari: ModuleType) -> None:
    """Read back as ``load_dataset`` would and compare every observation hash with the recording."""
    dataset = minari.MinariDataset(data_path)
    for index, episode in enumerate(dataset.iterate_episodes()):
        obs = episode.observations
        leaves = obs if isinstance(obs, dict) else {OBS_LEAF: obs}
        for name, recorded in hashes[index].items():
            stored = leaves[name]
            bad = next((t for t in range(len(recorded)) if t >= len(stored) or row_hash(stored[t]) != recorded[t]), None)
            if bad is not None:
                raise LossyExportError(f"minari changed observation {name!r} of episode {index} at step {bad}",
                                       f"refusing a lossy export; install minari=={MINARI_VERSION}")


def _metadata(config: MinariConfig, infos: Sequence[EpisodeInfo]) -> dict[str, Any]:
    collectors = sorted({i.collector for i in infos})
    meta: dict[str, Any] = {
        "algorithm_name": collectors[0] if len(collectors) == 1 else ", ".join(collectors),
        "description": f"{len(infos)} gymrec episodes of {infos[0].env_id} from {config.published_source}; "
                       "observations bit-identical to the recording, seeds in each episode's metadata.",
        "requirements": requirements(infos),
    }
    players = _players(infos)
    if config.credit_players and players:
        meta["author"] = set(players)
    if config.code_permalink:
        meta["code_permalink"] = config.code_permalink
    return meta


def _players(infos: Sequence[EpisodeInfo]) -> list[str]:
    return sorted({i.player for i in infos if i.player})


def _write_namespace(config: MinariConfig) -> None:
    namespace = Path(config.dataset_id).parent
    if str(namespace) != "." and not (config.datasets_root / namespace / NAMESPACE_FILE).exists():
        (config.datasets_root / namespace / NAMESPACE_FILE).write_text(json.dumps({}))


class _DatasetWriter:
    """Episodes into one Minari storage under ``tmp``; the storage is made by the first episode's env."""

    def __init__(self, tmp: Path, config: MinariConfig, minari: ModuleType) -> None:
        self.tmp = tmp
        self.config = config
        self.minari = minari
        self.storage: Any = None
        self.env: EnvDescription | None = None
        self.infos: list[EpisodeInfo] = []
        self.hashes: list[dict[str, list[int]]] = []

    def _open(self, info: EpisodeInfo) -> tuple[Any, EnvDescription]:
        env = describe_env(info)
        self.tmp.mkdir()
        storage_cls = importlib.import_module("minari.dataset.minari_storage").MinariStorage
        storage = storage_cls.new(self.tmp / "data", observation_space=env.observation_space,
                                  action_space=env.action_space, env_spec=env.spec, data_format=DATA_FORMAT,
                                  jpeg_encoding=False)
        storage.update_metadata({"dataset_id": self.config.dataset_id, "minari_version": self.minari.__version__,
                                 "eval_env_spec": env.spec.to_json()})
        return storage, env

    def add(self, source: EpisodeSource, info: EpisodeInfo) -> None:
        if self.infos and info.env_key != self.infos[0].env_key:
            raise ExportEnvError(f"{self.config.source_label} holds episodes of {self.infos[0].env_id} and "
                                 f"{info.env_id} (or different env kwargs)", "pass --env ENV_ID to export one env")
        if self.storage is None or self.env is None:
            self.storage, self.env = self._open(info)
        index = len(self.infos)
        buffer, obs_hashes = _buffer(source, info, index, self.env)
        self.storage.update_episodes([buffer])
        self.storage.update_episode_metadata([_episode_meta(info, self.config.published_source)], [index])
        self.infos.append(info)
        self.hashes.append(obs_hashes)

    def finish(self, corrupt: list[str]) -> None:
        if self.storage is None and corrupt:
            raise ExportCorruptError(f"every episode of {self.config.source_label} that could be exported is damaged "
                                     f"({len(corrupt)} skipped)", "nothing was written; recover them from a copy")
        if self.storage is None:
            what = f"episodes of {self.config.env_id}" if self.config.env_id else "episodes"
            raise EpisodeNotFoundError(f"{self.config.source_label} holds no {what}",
                                       "check SOURCE and --env (discarded episodes are skipped)")
        self.storage.update_metadata(_metadata(self.config, self.infos))
        _check_lossless(self.tmp / "data", self.hashes, self.minari)
        _write_namespace(self.config)


def export_minari(jobs: Sequence[Job], config: MinariConfig, progress: ProgressFactory,
                  warn: Callable[[str], None]) -> MinariResult:  # fmt: skip
    """Every episode of ``jobs`` (of ``config.env_id`` if given) into one Minari dataset, or nothing at
    all. A damaged episode is left out with a warning (``export.walk``)."""
    minari = load_minari()
    target = dataset_path(config)
    bar = progress(len(jobs), "episodes", "episode")

    def add(source: EpisodeSource) -> bool:
        bar.update(1)
        info = info_of(source)
        if config.env_id and info.env_id != config.env_id:
            return False
        writer.add(source, info)
        return True

    try:
        with staged(target, config.force, parents=True) as tmp:
            writer = _DatasetWriter(tmp, config, minari)
            tally = each_episode(jobs, add, warn)
            writer.finish(tally.corrupt)
    finally:
        bar.close()
    infos = writer.infos
    return MinariResult(config.dataset_id, target, infos[0].env_id, len(infos), sum(i.length for i in infos),
                        tally.skipped, tally.corrupt, tuple(_players(infos)) if config.credit_players else ())
