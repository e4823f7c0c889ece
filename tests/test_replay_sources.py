"""gymrec-replay from a local dataset, from the (test) Hub, after crash recovery, and --render."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pygame
import pytest
from huggingface_hub import constants

from gymrec.replay.render import Controls, show
from gymrec.replay.verify import VerifyOptions, verify
from gymrec.shared.dataset.index import DatasetIndex
from gymrec.shared.dataset.reader import DatasetSource, LocalFiles
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.sources import SpoolSource
from tests.replay_helpers import copy_episode, read_row, record_episode, replay_cli, rewrite_rows, tree_digest
from tests.uploader_helpers import to_dataset

pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
TOKEN = "hf_test_token"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    spool = tmp_path_factory.mktemp("spool")
    good = record_episode(spool, "BreakoutNoFrameskip-v4", 150, 2)
    bad = copy_episode(good, spool)
    rewrite_rows(bad, "reward", 33, float(read_row(bad, "reward", 33)) + 2.0)
    root = to_dataset([good, bad], tmp_path_factory.mktemp("dataset"))
    return {"spool": spool, "good": good, "bad": bad, "dataset": root}


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    from tests.hubserver import running_hub

    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    # huggingface_hub reads the variable at import: conftest sets it first; the client is never patched
    assert constants.HF_HUB_DISABLE_XET, "huggingface_hub was imported before conftest set HF_HUB_DISABLE_XET=1"
    with running_hub(TOKEN, tmp_path) as server:
        yield server


def _results(stdout: str) -> dict[str, str]:
    rows = [line.split() for line in stdout.splitlines()[1:] if line and not line.split()[0].endswith(":")]
    return {row[0]: " ".join(row[3:-1]) for row in rows}


def test_local_dataset_gives_the_spool_results(recorded: dict[str, Path], tmp_path: Path) -> None:
    spool = replay_cli(["--spool", str(recorded["spool"]), "--all"])
    local = replay_cli([str(recorded["dataset"]), "--all"])
    assert spool.returncode == local.returncode == 1, local.stderr
    assert _results(spool.stdout) == _results(local.stdout)
    assert _results(local.stdout)[recorded["bad"].stem[:8]] == "diverged step 33 reward: recorded 2.0, replayed 0.0"
    one = replay_cli(["--local-dir", str(recorded["dataset"]), recorded["good"].stem[:6]])
    assert one.returncode == 0 and "identical" in one.stdout


def test_dataset_frame_mismatch_decodes_the_image(recorded: dict[str, Path], tmp_path: Path) -> None:
    """A wrong hash in the dataset makes replay decode the stored WebP and compare it in full."""
    source = DatasetSource(DatasetIndex(LocalFiles(recorded["dataset"])), recorded["good"].stem)
    steps = source.steps()
    spool_steps = SpoolSource(recorded["good"]).steps()
    assert steps == spool_steps
    frame = source.observation(17)["frame"]
    assert (frame == read_row(recorded["good"], "obs/frame", 17)).all()
    result = verify(source, VerifyOptions(diff_dir=tmp_path, check_frames=True))
    assert result.status == "identical"


def test_hub_dataset_gives_the_spool_results(recorded: dict[str, Path], hub: object, tmp_path: Path) -> None:
    root = recorded["dataset"]
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")}
    hub.seed_repo("someone-else/doom-and-breakout", files)  # type: ignore[attr-defined]
    env = {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": ""}
    args = ["--repo-id", "someone-else/doom-and-breakout", "--endpoint", hub.endpoint]  # type: ignore[attr-defined]
    out = replay_cli([*args, "--all"], env=env)
    spool = replay_cli(["--spool", str(recorded["spool"]), "--all"])
    assert out.returncode == 1, out.stderr
    assert _results(out.stdout) == _results(spool.stdout)
    # only the index shards were downloaded; the data shard was read by byte ranges
    cached = [str(p) for p in (tmp_path / "hf").rglob("*.parquet")]
    assert cached and all("/meta/episodes/" in p for p in cached), cached
    ids = sorted([recorded["good"].stem, recorded["bad"].stem])
    index = f"#{ids.index(recorded['good'].stem)}"
    assert replay_cli([*args, index], env=env).returncode == 0
    missing = replay_cli(["--repo-id", "someone-else/nothing-here", "--endpoint", hub.endpoint, "0"], env=env)  # type: ignore[attr-defined]
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Traceback" not in missing.stderr


def test_a_recovered_episode_verifies(tmp_path: Path) -> None:
    from tests.test_recovery import kill_mid_episode

    spool = tmp_path / "spool"
    spool.mkdir()
    kill_mid_episode("PongNoFrameskip-v4", spool, tmp_path, seed=9, min_steps=150)
    out = replay_cli(["--spool", str(spool), "--all"], cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "recovered" in out.stderr and "identical" in out.stdout
    (sealed,) = spool.glob("*.zarr")
    assert Episode(sealed).end_reason == "recovered"
    before = tree_digest(spool)
    assert replay_cli([str(sealed)]).returncode == 0
    assert tree_digest(spool) == before


def _post_keys(*keys: int) -> None:
    for key in keys:
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))


def test_render_plays_and_verifies_live(recorded: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    source = SpoolSource(recorded["bad"])
    result = show(source, VerifyOptions(diff_dir=tmp_path), fps=2000.0, verify=True)
    assert result.status == "diverged" and result.divergence is not None
    assert (result.divergence.step, result.divergence.field) == (33, "reward")
    shown = show(SpoolSource(recorded["good"]), VerifyOptions(diff_dir=tmp_path), fps=2000.0, verify=False)
    assert shown.status == "shown" and shown.steps_run == shown.length


def test_render_keys(recorded: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame.init()
    pygame.display.set_mode((10, 10))
    try:
        controls = Controls()
        _post_keys(pygame.K_SPACE, pygame.K_RIGHT)
        controls.poll()
        assert controls.paused and controls.step == 1 and not controls.quit
        _post_keys(pygame.K_LEFT, pygame.K_SPACE)
        controls.poll()
        assert not controls.paused and controls.step == -1
        _post_keys(pygame.K_ESCAPE)
        controls.poll()
        assert controls.quit
        _post_keys(pygame.K_ESCAPE)  # Esc while playing: the window closes after the first frame, unverified
        from gymrec.shared.errors import ReplayStoppedError

        with pytest.raises(ReplayStoppedError, match="stopped at step 0"):
            show(SpoolSource(recorded["good"]), VerifyOptions(diff_dir=tmp_path), fps=30.0, verify=True)
    finally:
        pygame.quit()


def test_no_verify_needs_render() -> None:
    out = replay_cli(["--no-verify", "abc"])
    assert out.returncode == 2 and "--render" in out.stderr


class _Ids:
    where = "test dataset"

    def __init__(self, ids: list[str]) -> None:
        self._ids = sorted(ids)

    def episode_ids(self) -> list[str]:
        return self._ids


def test_a_numeric_id_prefix_is_never_read_as_an_index() -> None:
    from gymrec.shared.dataset.index import resolve_ids
    from gymrec.shared.errors import EpisodeNotFoundError

    files = _Ids(["123456ab-0000-4000-8000-000000000000", "abcdef00-0000-4000-8000-000000000000"])
    assert resolve_ids(files, "123456", False) == ["123456ab-0000-4000-8000-000000000000"]  # type: ignore[arg-type]
    assert resolve_ids(files, "1", False) == ["123456ab-0000-4000-8000-000000000000"]  # type: ignore[arg-type]
    assert resolve_ids(files, "#1", False) == ["abcdef00-0000-4000-8000-000000000000"]  # type: ignore[arg-type]
    assert resolve_ids(files, "0", False) == ["123456ab-0000-4000-8000-000000000000"]  # type: ignore[arg-type]
    with pytest.raises(EpisodeNotFoundError):
        resolve_ids(files, "#5", False)  # type: ignore[arg-type]
