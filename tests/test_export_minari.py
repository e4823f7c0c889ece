"""gymrec-export minari: real recordings in, a Minari dataset out that minari loads and replays exactly."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from gymrec.shared.spool.sources import SpoolSource
from tests.conftest import record
from tests.export_helpers import export_cli, one_line_error, recorded_frames, to_local_dataset, tree

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")
ALE, DOOM, RETRO = "ALE/Breakout-v5", "VizdoomBasic-v1", "Airstriker-Genesis-v0"
FIRST_SEED = MappingProxyType({ALE: 3, DOOM: 4})  # the --seed of each recording session


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two ALE episodes (the second with a derived seed) and one VizDoom episode, recorded by the real CLI."""
    root = tmp_path_factory.mktemp("export-spool")
    cwd = tmp_path_factory.mktemp("export-cwd")
    record(ALE, root, cwd, 120, 3, "--player", "alice", "--episodes", "2")
    record(DOOM, root, cwd, 120, 4, "--player", "bob")
    return root


@pytest.fixture
def minari_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "minari"
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(path))
    return path


def _env(minari_path: Path) -> dict[str, str]:
    return {"MINARI_DATASETS_PATH": str(minari_path)}


def _at(value: Any, t: int) -> Any:
    return {k: v[t] for k, v in value.items()} if isinstance(value, dict) else value[t]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    return bool(np.array_equal(a, b))


def _episodes_of(spool: Path, env_id: str) -> dict[str, Path]:
    """episode id -> path, for every recorded episode of ``env_id``."""
    return {p.stem: p for p in spool.glob("*.zarr") if SpoolSource(p).env_id == env_id}


def _first_of(spool: Path, env_id: str) -> Path:
    """The session's first episode: the one reset with the --seed given."""
    return next(p for p in _episodes_of(spool, env_id).values() if SpoolSource(p).attrs.seed == FIRST_SEED[env_id])


def _exported_ids(dataset_id: str) -> list[str]:
    import minari

    dataset = minari.load_dataset(dataset_id)
    return [m["gymrec_episode_id"] for m in dataset.storage.get_episode_metadata(dataset.episode_indices)]


def replay_through_minari(dataset_id: str) -> list[tuple[int, int]]:
    """Step every episode through recover_environment() with its seed; (episode, first bad step) per mismatch."""
    import minari

    dataset = minari.load_dataset(dataset_id)
    metas = list(dataset.storage.get_episode_metadata(dataset.episode_indices))
    bad = []
    for meta, episode in zip(metas, dataset.iterate_episodes(), strict=True):
        env = dataset.recover_environment()
        try:
            obs, _ = env.reset(seed=int(meta["seed"]))
            if not _same(obs, _at(episode.observations, 0)):
                bad.append((episode.id, 0))
                continue
            for t in range(len(episode.rewards)):
                obs, reward, *_ = env.step(_at(episode.actions, t))
                if not _same(obs, _at(episode.observations, t + 1)) or float(reward) != float(episode.rewards[t]):
                    bad.append((episode.id, t + 1))
                    break
        finally:
            env.close()
    return bad


@pytest.mark.parametrize("env_id", [ALE, DOOM])
def test_export_reproduces_through_recover_environment(env_id: str, spool: Path, minari_path: Path,
                                                       workdir: Path) -> None:  # fmt: skip
    dataset_id = "gymrec/" + env_id.split("/")[-1].lower()
    proc = export_cli("minari", str(spool), dataset_id, "--env", env_id, cwd=workdir, env=_env(minari_path))
    assert proc.returncode == 0, proc.stderr
    ours = _episodes_of(spool, env_id)
    others = len(list(spool.glob("*.zarr"))) - len(ours)
    assert f"{len(ours)} episode(s)" in proc.stdout and f"{others} skipped" in proc.stdout
    assert replay_through_minari(dataset_id) == []

    import minari

    dataset = minari.load_dataset(dataset_id)
    assert sorted(_exported_ids(dataset_id)) == sorted(ours)
    for episode_id, episode in zip(_exported_ids(dataset_id), dataset.iterate_episodes(), strict=True):
        recorded = recorded_frames(ours[episode_id])
        stored = episode.observations if isinstance(episode.observations, dict) else {"frame": episode.observations}
        for leaf, frames in recorded.items():  # bit-identical to the recording, not only to a replay
            assert stored[leaf].dtype == frames[0].dtype and len(stored[leaf]) == len(frames)
            assert all(np.array_equal(s, f) for s, f in zip(stored[leaf], frames, strict=True))
    assert dataset.storage.metadata["jpeg_encoding"] is False


def test_metadata_seed_algorithm_requirements_and_no_author_by_default(spool: Path, minari_path: Path,
                                                                       workdir: Path) -> None:  # fmt: skip
    import minari

    assert export_cli("minari", str(spool), "gymrec/ale-v0", "--env", ALE, cwd=workdir,
                      env=_env(minari_path)).returncode == 0
    source = SpoolSource(_first_of(spool, ALE))
    meta = minari.load_dataset("gymrec/ale-v0").storage.metadata
    assert meta["algorithm_name"] == "random"
    assert "author" not in meta  # the player did not opt in
    versions = source.attrs.versions
    assert meta["requirements"] == [f"gymnasium=={versions['gymnasium']}", f"ale-py=={versions['ale-py']}"]
    assert json.loads(meta["env_spec"])["kwargs"]["render_mode"] == "rgb_array"
    dataset = minari.load_dataset("gymrec/ale-v0")
    episode_metas = list(dataset.storage.get_episode_metadata(dataset.episode_indices))
    recorded_seeds = {i: SpoolSource(p).attrs.seed for i, p in _episodes_of(spool, ALE).items()}
    assert {m["gymrec_episode_id"]: m["seed"] for m in episode_metas} == recorded_seeds
    assert recorded_seeds[source.id] == 3 and len(set(recorded_seeds.values())) == 2

    assert export_cli("minari", str(spool), "gymrec/ale-credited-v0", "--env", ALE, "--author", cwd=workdir,
                      env=_env(minari_path)).returncode == 0
    assert minari.load_dataset("gymrec/ale-credited-v0").storage.metadata["author"] == {"alice"}


def test_code_permalink_comes_from_the_package_metadata(spool: Path, minari_path: Path, workdir: Path) -> None:
    import minari

    from gymrec.export.cli import code_permalink

    assert export_cli("minari", str(spool), "ale-v1", "--env", ALE, cwd=workdir, env=_env(minari_path)).returncode == 0
    assert minari.load_dataset("ale-v1").storage.metadata.get("code_permalink") == code_permalink()


def test_a_local_dataset_exports_like_the_spool(spool: Path, minari_path: Path, workdir: Path, tmp_path: Path) -> None:
    dataset = to_local_dataset(spool, tmp_path / "dataset", workdir)
    proc = export_cli("minari", str(dataset), "from-dataset-v0", "--env", DOOM, cwd=workdir, env=_env(minari_path))
    assert proc.returncode == 0, proc.stderr
    assert replay_through_minari("from-dataset-v0") == []


def test_mixed_envs_existing_target_and_bad_input_are_one_line(spool: Path, minari_path: Path, workdir: Path) -> None:
    env = _env(minari_path)
    line = one_line_error(export_cli("minari", str(spool), "mixed-v0", cwd=workdir, env=env))
    assert "--env" in line
    assert not (minari_path / "mixed-v0").exists()
    assert [p.name for p in minari_path.iterdir()] == [] if minari_path.exists() else True  # no temporary left

    assert export_cli("minari", str(spool), "kept-v0", "--env", ALE, cwd=workdir, env=env).returncode == 0
    before = tree(minari_path / "kept-v0")
    line = one_line_error(export_cli("minari", str(spool), "kept-v0", "--env", DOOM, cwd=workdir, env=env))
    assert "already exists" in line and "--force" in line
    assert tree(minari_path / "kept-v0") == before
    assert export_cli("minari", str(spool), "kept-v0", "--env", DOOM, "--force", cwd=workdir, env=env).returncode == 0
    import minari

    assert minari.load_dataset("kept-v0").spec.env_spec.id == DOOM
    assert sorted(p.name for p in minari_path.iterdir()) == ["kept-v0"]  # the old copy and temporaries are gone

    assert "no episodes of ALE/Pong-v5" in one_line_error(
        export_cli("minari", str(spool), "none-v0", "--env", "ALE/Pong-v5", cwd=workdir, env=env))
    assert "not a Minari dataset id" in one_line_error(export_cli("minari", str(spool), "no version", cwd=workdir, env=env))
    assert "neither a directory nor" in one_line_error(
        export_cli("minari", str(workdir / "missing"), "x-v0", cwd=workdir, env=env))


def test_missing_minari_is_one_line(spool: Path, tmp_path: Path, workdir: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "minari.py").write_text("raise ImportError('No module named minari')\n")
    proc = export_cli("minari", str(spool), "x-v0", "--env", ALE, cwd=workdir,
                      env={"PYTHONPATH": str(shadow), "MINARI_DATASETS_PATH": str(tmp_path / "m")})
    assert "minari is not installed" in one_line_error(proc) and "pip install" in proc.stderr
    assert not (tmp_path / "m" / "x-v0").exists()


def test_a_full_disk_leaves_nothing_under_the_target(spool: Path, tiny_disk: Path, workdir: Path) -> None:
    proc = export_cli("minari", str(spool), "big-v0", "--env", DOOM, cwd=workdir,
                      env={"MINARI_DATASETS_PATH": str(tiny_disk)})
    assert "full" in one_line_error(proc)
    assert list(tiny_disk.iterdir()) == []


def test_a_lossy_store_is_refused(spool: Path, minari_path: Path, workdir: Path) -> None:
    """The read-back check itself: a stored frame whose hash differs from the recording is refused."""
    from gymrec.export.minari_export import _check_lossless, load_minari
    from gymrec.shared.errors import LossyExportError

    assert export_cli("minari", str(spool), "check-v0", "--env", ALE, cwd=workdir, env=_env(minari_path)).returncode == 0
    episodes = _episodes_of(spool, ALE)
    hashes = [SpoolSource(episodes[i]).steps().obs_hashes for i in _exported_ids("check-v0")]
    data = minari_path / "check-v0" / "data"
    _check_lossless(data, hashes, load_minari())  # the real hashes pass
    frame = hashes[1]["frame"]
    tampered = [hashes[0], {"frame": [*frame[:40], frame[40] ^ 1, *frame[41:]]}]
    with pytest.raises(LossyExportError, match="episode 1 at step 40"):
        _check_lossless(data, tampered, load_minari())


def test_retro_exports_and_recovers(tmp_path: Path, minari_path: Path, workdir: Path) -> None:
    """stable-retro has no registered spec: gymrec writes one whose entry point is stable_retro:make."""
    retro_spool = tmp_path / "retro"
    record(RETRO, retro_spool, workdir, 100, 5)
    proc = export_cli("minari", str(retro_spool), "retro-v0", cwd=workdir, env=_env(minari_path))
    assert proc.returncode == 0, proc.stderr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert replay_through_minari("retro-v0") == []


def test_a_hub_dataset_exports(spool: Path, hub: object, minari_path: Path, workdir: Path, tmp_path: Path) -> None:
    dataset = to_local_dataset(spool, tmp_path / "dataset", workdir)
    hub.seed_repo("someone/gymrec-mixed", tree(dataset))  # type: ignore[attr-defined]
    proc = export_cli("minari", "hf://someone/gymrec-mixed", "from-hub-v0", "--env", ALE,
                      "--endpoint", hub.endpoint, cwd=workdir, env={**_env(minari_path), "HF_TOKEN": ""})  # type: ignore[attr-defined]
    assert proc.returncode == 0, proc.stderr
    assert replay_through_minari("from-hub-v0") == []
    missing = export_cli("minari", "someone/nothing-here", "x-v0", "--endpoint", hub.endpoint,  # type: ignore[attr-defined]
                         cwd=workdir, env={**_env(minari_path), "HF_TOKEN": ""})
    assert "does not exist" in one_line_error(missing)
