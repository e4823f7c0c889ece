"""The dataset carries the player's timing, who acted, the quality fields, lineage and action meanings."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datasets
import pytest
from uploader_helpers import clean_env, local_index, record_episode, run_uploader

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.session import episode_attrs
from gymrec.replay.cli import lineage
from gymrec.shared.dataset import layout
from gymrec.shared.envs.backends import VizdoomBackend, action_meanings, make_env
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.spaces import encode_action, split_observation
from gymrec.shared.spool.writer import EpisodeWriter
from gymrec.uploader.status import spool_status
from tests.recording import new_attrs
from tests.spool_versions import as_previous_version, attributes, write_attributes

ENV = "BreakoutNoFrameskip-v4"
CONFIG = layout.env_slug(ENV)
HUMAN = {"active_fraction": 0.75, "inputs_per_minute": 42.5, "longest_idle_s": 3.5, "paused_s": 1.25,
         "late_frames": 2, "worst_late_ms": 17.5,
         "input_log": {"origin_ns": 9_000_000, "kinds": ["key_down", "key_up"], "t_ns": [1000, 1900], "kind": [0, 1], "code": [32, 32], "value": [1, 0]}}  # fmt: skip
T0 = 10_000_000


def _record(spool: Path, steps: int, seed: int, extra: dict[str, Any], actors: list[str]) -> Path:
    """A human-style episode: step t shown at T0 + 100 t, decided 40 ns later, ``actors`` cycled."""
    made = make_env(ENV, {})
    env = made.env
    try:
        env.action_space.seed(seed)
        config = PlayConfig(env_id=ENV, spool=spool, env_kwargs=made.kwargs, seed=seed, agent="human", headless=False, player="p")
        attrs = new_attrs(episode_attrs(config, made, seed, made.native_fps, None) | extra)
        writer = EpisodeWriter.create(spool, attrs, backpressure=True)
        obs, info = env.reset(seed=seed)
        for t in range(steps):
            action = env.action_space.sample()
            code = schema.ACTORS.index(actors[t % len(actors)])
            writer.record(split_observation(obs), encode_action(attrs.action_space, action), info,
                          (T0 + 100 * t, T0 + 100 * t + 40), code)  # fmt: skip
            obs, reward, terminated, truncated, info = env.step(action)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
        return writer.seal(split_observation(obs), "truncated")
    finally:
        env.close()


def _strip_times(sealed: Path) -> None:
    """Make ``sealed`` look recorded before the STEP_TIMES arrays existed (their checksums go too)."""
    for name in schema.STEP_TIMES:
        shutil.rmtree(sealed / name)
    attrs = attributes(sealed)
    sums = attrs[schema.CHECKSUMS_ATTR]
    sums["metadata"] = {k: v for k, v in sums["metadata"].items() if k.split("/")[0] not in schema.STEP_TIMES}
    write_attributes(sealed, attrs)


def _upload(spool: Path, dataset: Path, cwd: Path, *extra: str) -> str:
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset), "--workers", "1", *extra],
                        cwd, clean_env(HOME=str(cwd)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


def _rows(ds: datasets.Dataset, eid: str) -> list[dict[str, Any]]:
    return [row for row in ds.select_columns(["episode_id", "step", *schema.STEP_TIMES]) if row["episode_id"] == eid]


def test_times_actor_quality_lineage_and_meanings_locally(tmp_path: Path, spool: Path) -> None:
    parent = "0b5e2d8c-6a3f-4f1e-9a57-2d9b1c3e4f50"
    human = _record(spool, 6, 1, HUMAN | {"parent_episode_id": parent, "branch_step": 2}, ["copied", "copied", "human"])
    takeover = _record(spool, 4, 2, {"takeover": True}, ["agent", "human"])
    old = _record(spool, 3, 3, {"input_log": HUMAN["input_log"]}, ["human"])
    _strip_times(old)
    as_previous_version(old)  # its input log in the attributes, checksums.json beside it: users' queued spools
    assert (human / schema.input_path("t_ns") / schema.METADATA_NAME).is_file(), "the spool keeps the events as arrays"
    agent = record_episode(spool, ENV, 5, seed=4)  # headless agent: times recorded as 0 ("not measured")
    dataset = tmp_path / "dataset"
    assert _upload(spool, dataset, tmp_path).startswith("4 uploaded")

    ds = datasets.load_dataset(str(dataset), CONFIG, split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert ds.features[schema.ACTOR] == datasets.ClassLabel(names=list(schema.ACTORS))
    assert ds.features[schema.SHOWN_NS] == datasets.Value("int64") == ds.features[schema.DECIDED_NS]
    names = ds.features[schema.ACTOR].names
    rows = _rows(ds, human.stem.split(".")[0])
    assert [r["shown_ns"] for r in rows] == [T0 + 100 * t for t in range(6)]
    assert [r["decided_ns"] - r["shown_ns"] for r in rows] == [40] * 6
    assert [names[r["actor"]] for r in rows] == ["copied", "copied", "human"] * 2
    assert [names[r["actor"]] for r in _rows(ds, takeover.stem.split(".")[0])] == ["agent", "human"] * 2
    # No actor array (older or headless episodes): every step is the collector's, here a human's.
    assert all(r["shown_ns"] is None and r["decided_ns"] is None and names[r["actor"]] == "human"
               for r in _rows(ds, old.stem.split(".")[0]))
    agent_rows = _rows(ds, agent.stem.split(".")[0])
    assert len(agent_rows) == 5 and all(r["shown_ns"] is None and r["decided_ns"] is None for r in agent_rows)
    assert all(names[r["actor"]] == "agent" for r in agent_rows)  # headless: no actor array, the collector's

    index = local_index(dataset)
    h = index[human.stem.split(".")[0]]
    assert {k: h[k] for k in HUMAN if k != "input_log"} == {k: v for k, v in HUMAN.items() if k != "input_log"}
    assert json.loads(h["input_log"]) == HUMAN["input_log"]
    assert json.loads(index[old.stem.split(".")[0]]["input_log"]) == HUMAN["input_log"]
    assert (h["parent_episode_id"], h["branch_step"], h["branched_at"], h["takeover"]) == (parent, 2, None, None)
    assert index[takeover.stem.split(".")[0]]["takeover"] is True
    a = index[agent.stem.split(".")[0]]
    assert a["active_fraction"] is None and a["input_log"] is None and a["parent_episode_id"] is None
    assert a["action_meanings"] == ["NOOP", "FIRE", "RIGHT", "LEFT"] == h["action_meanings"]

    info = json.loads((dataset / layout.INFO_PATH).read_text())
    quality = info["configs"][CONFIG]["quality"]
    assert quality["rated_episodes"] == 1 and quality["late_frames_sum"] == 2 and quality["worst_late_ms_max"] == 17.5
    assert quality["branch_episodes"] == 1 and quality["takeover_episodes"] == 1
    assert "active_fraction" in info["index_features"]
    card = (dataset / layout.CARD_PATH).read_text()
    assert "mean active fraction 0.75, mean 42.5 inputs per minute" in card
    assert "1 branch episode, 1 takeover episode" in card
    assert "## Timing and lineage" in card and "| `actor` | ClassLabel ['human', 'agent', 'copied']" in card
    assert "- value 1: `FIRE`" in card


def test_min_active_leaves_idle_episodes_in_the_spool(tmp_path: Path, spool: Path) -> None:
    idle = _record(spool, 3, 1, HUMAN | {"active_fraction": 0.1}, ["human"])
    busy = _record(spool, 3, 2, HUMAN | {"active_fraction": 0.9}, ["human"])
    agent = record_episode(spool, ENV, 3, seed=3)  # no quality fields: nothing to judge, it goes up
    assert spool_status(spool, 0.5)["low-activity"].ids == [idle.stem]
    assert spool_status(spool)["low-activity"].episodes == 0
    dataset = tmp_path / "dataset"
    assert _upload(spool, dataset, tmp_path, "--min-active", "0.5").startswith("2 uploaded")
    assert idle.is_dir() and not busy.exists() and not agent.exists()
    assert set(local_index(dataset)) == {busy.stem, agent.stem}
    status = run_uploader(["status", "--spool", str(spool), "--min-active", "0.5"], tmp_path, clean_env(HOME=str(tmp_path)))
    assert status.returncode == 0, status.stderr
    assert [line.split() for line in status.stdout.splitlines() if line.startswith("low-activity")] == [["low-activity", "1", "3"]]
    # The default uploads everything that is left.
    assert _upload(spool, dataset, tmp_path).startswith("1 uploaded")


@pytest.mark.parametrize("bad", [["--min-active", "1.5"], ["--min-active", "x"]])
def test_min_active_out_of_range_is_one_line(tmp_path: Path, spool: Path, bad: list[str]) -> None:
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(tmp_path / "d"), *bad], tmp_path, clean_env(HOME=str(tmp_path)))
    assert done.returncode != 0 and "--min-active" in done.stderr and "Traceback" not in done.stderr


def test_vizdoom_meanings_name_each_discrete_value(workdir: Path) -> None:
    made = make_env("VizdoomBasic-v1", {})
    try:
        meanings = action_meanings(made)
        assert meanings is not None and len(meanings) == made.env.action_space.n  # type: ignore[attr-defined]
        # Basic allows one button at a time: Discrete(4) over (MOVE_LEFT, MOVE_RIGHT, ATTACK) combinations.
        assert meanings == ("NOOP", "ATTACK", "MOVE_RIGHT", "MOVE_LEFT")
        assert VizdoomBackend().action_meanings(made.env) == meanings
    finally:
        made.env.close()


def test_retro_meanings_are_the_buttons(tmp_path: Path) -> None:
    # One stable-retro emulator per process: in a child.
    code = ("from gymrec.shared.envs.backends import make_env, action_meanings\n"
            "m = make_env('Airstriker-Genesis-v0', {})\n"
            "print(','.join(action_meanings(m))); m.env.close()\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    buttons = done.stdout.strip().split(",")
    assert len(buttons) == 12 and {"B", "A", "START", "UP", "DOWN", "LEFT", "RIGHT"} <= set(buttons)


def test_replay_names_the_lineage(tmp_path: Path, spool: Path) -> None:
    parent = "0b5e2d8c-6a3f-4f1e-9a57-2d9b1c3e4f50"
    branch = _record(spool, 4, 1, {"parent_episode_id": parent, "branch_step": 2}, ["copied", "copied", "human"])
    done = subprocess.run([str(Path(sys.executable).parent / "gymrec-replay"), str(branch)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env=clean_env(HOME=str(tmp_path)))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "identical (branch of 0b5e2d8c at step 2)" in done.stdout
    base = EpisodeAttrs.from_dict(json.loads((branch / "zarr.json").read_text())["attributes"], "t", sealed=True)
    assert lineage(base.updated({"parent_episode_id": None, "branch_step": None, "branched_at": 9})) == "branched at step 9"
    assert lineage(base.updated({"parent_episode_id": None, "branch_step": None, "takeover": True})) == "takeover"
    assert lineage(base.updated({"parent_episode_id": None, "branch_step": None})) == ""


def test_new_columns_through_the_hub_with_load_dataset(tmp_path: Path, spool: Path) -> None:
    from tests.hubserver import running_hub

    token, repo = "hf_hd_secret_1", "tester/gymrec-hd"
    human = _record(spool, 4, 1, HUMAN | {"takeover": True}, ["agent", "human"])
    with running_hub(token=token, tmp_path=tmp_path) as hub:
        env = clean_env(HF_TOKEN=token, HF_ENDPOINT=hub.endpoint, HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf-home"))
        done = run_uploader(["--spool", str(spool), "--once", "--repo-id", repo], tmp_path, env)
        assert done.returncode == 0, done.stderr
        code = (
            "import sys, json, datasets\n"
            f"ds = datasets.load_dataset({repo!r}, {CONFIG!r}, split='train')\n"
            "names = ds.features['actor'].names\n"
            "json.dump([[r['shown_ns'], r['decided_ns'], names[r['actor']]] for r in ds], sys.stdout)\n"
        )
        loaded = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        assert json.loads(loaded.stdout) == [[T0 + 100 * t, T0 + 100 * t + 40, ["agent", "human"][t % 2]] for t in range(4)]
        card = hub.files(repo)[layout.CARD_PATH].decode()
        assert done.stdout.startswith("1 uploaded") and "1 takeover episode" in card and not human.exists()


def test_human_play_recorded_before_the_pairing_fix_is_marked_lagged(tmp_path: Path, spool: Path) -> None:
    """Episodes without ``pairing`` (gymrec < 0.2) stay readable and replayable, but say they are lagged:
    in the attributes, the index, the card and the replay table, so nobody trains on them unknowingly."""
    old = _record(spool, 6, 1, {}, ["human"])
    new = _record(spool, 6, 2, {}, ["human"])
    agent = _record(spool, 6, 3, {"collector": "random"}, ["agent"])
    for path in (old, agent):
        attrs = attributes(path)
        del attrs["pairing"]
        write_attributes(path, attrs)
    assert EpisodeAttrs.from_dict(attributes(old), "old", sealed=True).action_pairing == schema.PAIRING_LAGGED
    assert EpisodeAttrs.from_dict(attributes(agent), "agent", sealed=True).action_pairing == schema.PAIRING_ON_SCREEN
    assert lineage(EpisodeAttrs.from_dict(attributes(old), "old", sealed=True)) == "lagged pairing"
    assert lineage(EpisodeAttrs.from_dict(attributes(new), "new", sealed=True)) == ""
    replay = subprocess.run([str(Path(sys.executable).parent / "gymrec-replay"), str(old), "--spool", str(spool)],
                            capture_output=True, text=True, env=clean_env(HOME=str(tmp_path)), cwd=tmp_path)
    assert replay.returncode == 0 and "identical" in replay.stdout and "lagged pairing" in replay.stdout, replay
    dataset = tmp_path / "dataset"
    _upload(spool, dataset, tmp_path)
    index = local_index(dataset)
    assert {eid: row["pairing"] for eid, row in index.items()} == {
        old.stem: "lagged", new.stem: "on_screen", agent.stem: "on_screen"}
    card = (dataset / "README.md").read_text()
    assert "Pairing: 1 episode of human play recorded before gymrec 0.2" in card
