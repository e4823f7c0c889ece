"""Recorder, replay and keymap paths the README promises that no other suite walked (issue 15).

Episodes are recorded through ``gymrec-play`` (the product's Session and writer process); tampered
copies are edited one zarr row at a time and then judged by ``gymrec-replay``.
"""

from __future__ import annotations

from pathlib import Path

import datasets
import gymnasium
import numpy as np
import pytest
import stable_retro.data

from gymrec.shared.dataset import layout
from gymrec.shared.keymaps.keymap import load_keymap
from gymrec.shared.keymaps.resolvers import build_resolver
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import UPLOADED_LOCAL_AREA
from gymrec.shared.spool.episode import Episode
from tests.conftest import record, run_cli
from tests.replay_helpers import copy_episode, read_row, replay_cli, rewrite_rows
from tests.uploader_helpers import clean_env, run_uploader

ENV_ID = "BreakoutNoFrameskip-v4"


def _seeds(spool: Path, workdir: Path) -> list[int]:
    paths = record(ENV_ID, spool, workdir, 15, 5, "--episodes", "3")
    assert len(paths) == 3
    return [Episode(p).attrs.seed for p in paths]


def test_later_episode_seeds_are_reproducible(tmp_path: Path, workdir: Path) -> None:
    first, second = _seeds(tmp_path / "a", workdir), _seeds(tmp_path / "b", workdir)
    assert first == second, "the same --seed must give the same seed for every episode"
    assert first[0] == 5 and len(set(first)) == 3, first


@pytest.fixture(scope="module")
def sealed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme-paths")
    (path,) = record(ENV_ID, root / "spool", root, 60, 3)
    return path


def _divergence(episode: Path) -> str:
    out = replay_cli([str(episode)])
    assert out.returncode == 1, out.stdout + out.stderr
    (row,) = [line for line in out.stdout.splitlines() if line.startswith(Episode(episode).id[:8])]
    return row


@pytest.mark.parametrize("field", ["terminated", "truncated"])
def test_a_flipped_flag_is_reported_as_that_flag(sealed: Path, tmp_path: Path, field: str) -> None:
    copy = copy_episode(sealed, tmp_path / "spool")
    step = Episode(copy).length - 10
    rewrite_rows(copy, field, step, not bool(read_row(copy, field, step)))
    row = _divergence(copy)
    assert f"step {step} {field}:" in row, row


def test_a_changed_final_observation_is_reported_as_final(sealed: Path, tmp_path: Path) -> None:
    copy = copy_episode(sealed, tmp_path / "spool")
    episode = Episode(copy)
    key, last = episode.attrs.image_key, episode.length  # hash rows are T+1: the last is the final observation
    rewrite_rows(copy, schema.hash_path(key), last, int(read_row(copy, schema.hash_path(key), last)) ^ 1)
    row = _divergence(copy)
    assert f"step {last} final observation" in row, row


def test_box_and_multidiscrete_actions_round_trip_through_the_dataset(tmp_path: Path, workdir: Path) -> None:
    """Deathmatch has delta buttons (a Box); max_buttons_pressed=0 without MultiBinary makes its binary buttons MultiDiscrete."""
    spool = tmp_path / "spool"
    (path,) = record("VizdoomDeathmatch-v1", spool, workdir, 40, 4, "--env-kwarg", "max_buttons_pressed=0",
                     "--env-kwarg", "use_multi_binary_action_space=false")
    space = Episode(path).attrs.action_space
    assert space["type"] == "Dict", space
    assert {k: v["type"] for k, v in space["spaces"].items()} == {"binary": "MultiDiscrete", "continuous": "Box"}
    dataset = tmp_path / "dataset"
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset)], workdir, clean_env(HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    episode = Episode(spool / UPLOADED_LOCAL_AREA / path.name)
    ds = datasets.load_dataset(str(dataset), split="train", cache_dir=str(tmp_path / "hf-datasets-cache"))
    assert len(ds) == episode.length
    actions = episode.actions()
    for t, value in enumerate(ds["action"]):
        native = layout.decode_action_value(space, value)
        assert np.array_equal(native["binary"], actions[t]["binary"]), t
        assert np.array_equal(native["continuous"], actions[t]["continuous"]), t
        assert native["continuous"].dtype == np.float32
    assert any(np.any(a["continuous"] != 0) for a in actions), "the Box leaf was never exercised"


class _FakeRetro(gymnasium.Env[np.ndarray, np.ndarray]):
    """What the resolver reads of a stable-retro env: ``system``, ``buttons``, a MultiBinary space."""

    def __init__(self, system: str, buttons: list[str | None]) -> None:
        self.system = system
        self.buttons = buttons
        self.action_space = gymnasium.spaces.MultiBinary(len(buttons))
        self.observation_space = gymnasium.spaces.Box(0, 255, (1,), np.uint8)


CONSOLES = sorted(set(load_keymap("retro").sections) & set(stable_retro.data.EMU_INFO))


def test_the_builtin_keymap_covers_consoles_beyond_genesis() -> None:
    assert {"Nes", "Snes", "Atari2600", "GameBoy", "Sms", "PCEngine"} <= set(CONSOLES), CONSOLES


@pytest.mark.parametrize("console", CONSOLES)
def test_retro_keymap_resolves_on_each_consoles_real_button_list(console: str) -> None:
    """stable-retro's own button list per console (no ROM needed): every binding lands, pads cancel."""
    buttons = list(stable_retro.data.EMU_INFO[console]["buttons"])
    resolve = build_resolver(load_keymap("retro"), _FakeRetro(console, buttons))
    described = resolve.describe()
    assert described["unavailable"] == {}, described["unavailable"]
    assert described["keys"]["up"] == "UP" and described["keys"]["left"] == "LEFT"
    pressed = resolve(frozenset({"up", "return"}))
    assert gymnasium.spaces.MultiBinary(len(buttons)).contains(pressed), pressed
    names = {buttons[i] for i in np.flatnonzero(pressed)}
    assert names == {"UP", described["keys"]["return"]}, names
    assert {buttons[i] for i in np.flatnonzero(resolve(frozenset({"left", "right", "up"})))} == {"UP"}
    assert not resolve.noop.any()


def test_default_spool_is_under_xdg_data_home(tmp_path: Path, workdir: Path) -> None:
    env = clean_env(HOME=str(tmp_path / "home"), XDG_DATA_HOME=str(tmp_path / "xdg"))
    assert "GYMREC_SPOOL" not in env
    done = run_cli("gymrec-play", ENV_ID, "--agent", "random", "--headless", "--max-steps", "10", cwd=workdir, env=env)
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stdout.splitlines() if x.endswith(schema.SEALED_SUFFIX)]
    assert Path(line).parent == tmp_path / "xdg" / "gymrec" / "spool"
    status = run_cli("gymrec-uploader", "status", cwd=workdir, env=env)
    assert status.returncode == 0, status.stderr
    waiting = next(r.split() for r in status.stdout.splitlines() if r.startswith("waiting"))
    assert waiting[1:] == ["1", "10"], status.stdout
