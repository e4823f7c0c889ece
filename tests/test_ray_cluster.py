"""gymrec-play --ray on a real two-node Ray cluster on this machine (tests/ray_cluster.py): a planned run
survives an actor killed mid-episode and a node lost mid-run; both node spools, uploaded by one
gymrec-uploader each into one repo, publish every planned episode exactly once, and each replays
identical."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from hubserver import running_hub
from reliability_uploader_helpers import STRESS, cli_env, landing, run

from gymrec.recorder.cluster.plan import plan_run
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import SET_ASIDE_AREA
from gymrec.shared.spool.episode import episode_attributes
from tests.ray_cluster import BIN, node_env, ray_cluster, requires_ray

pytestmark = requires_ray
BREAKOUT = "BreakoutNoFrameskip-v4"
TOKEN = "hf_ray_cluster_7e1f"
REPO = "tester/gymrec-cluster"
RUN, SEED, EPISODES, STEPS = "cluster-test", 11, 6, 300


def _wait(condition: Callable[[], bool], what: str, driver: subprocess.Popen[str], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert driver.poll() is None, f"the run ended before {what}: {driver.communicate()[1]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _partials(spool: Path) -> list[Path]:
    return list(spool.glob("*" + schema.PARTIAL_SUFFIX)) if spool.is_dir() else []


def _superseded(spool: Path) -> list[str]:
    """Episodes of this spool kept as superseded: sealed by recovery, or set aside by a re-recording."""
    found = []
    for path in [*spool.glob("*" + schema.SEALED_SUFFIX), *(spool / SET_ASIDE_AREA).glob("*-*-*")]:
        reason = Path(f"{path}.reason.txt")
        if reason.is_file() and reason.read_text().startswith("superseded"):
            found.append(path.name)
        elif path.is_dir() and path.suffix == schema.SEALED_SUFFIX:
            attrs = episode_attributes(path, sealed=True)
            if (attrs.discarded_because or "").startswith("superseded"):
                found.append(path.name)
    return found


def test_a_planned_run_survives_an_actor_kill_and_a_node_loss_and_publishes_each_episode_once(tmp_path: Path) -> None:
    _planned_run(tmp_path, EPISODES, slots=1)


@pytest.mark.skipif(not STRESS, reason="make stress only (GYMREC_STRESS=1): 4 actors, 24 episodes")
def test_a_bigger_planned_run_with_two_actors_a_node(tmp_path: Path) -> None:
    _planned_run(tmp_path, 24, slots=2)


def _planned_run(tmp_path: Path, episodes: int, slots: int) -> None:
    with ray_cluster(tmp_path / "cluster", slots=slots) as cluster, running_hub(token=TOKEN, tmp_path=tmp_path) as hub:
        a, b = cluster.nodes["a"], cluster.nodes["b"]
        driver = subprocess.Popen(
            [str(BIN / "gymrec-play"), BREAKOUT, "--agent", "tests.slow_agent:act", "--ray", cluster.address,
             "--episodes", str(episodes), "--max-steps", str(STEPS), "--seed", str(SEED), "--run", RUN],
            cwd=tmp_path, env=node_env(tmp_path / "driver-spool", cluster.root / "home"), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        try:
            _wait(lambda: bool(_partials(a.spool)) and bool(a.actor_pids()), "an episode on node a", driver)
            os.kill(a.actor_pids()[0], signal.SIGKILL)  # an actor killed mid-episode
            _wait(lambda: bool(_partials(b.spool)), "an episode on node b", driver)
            b.stop()  # a node lost mid-run
            out, err = driver.communicate(timeout=240)
        finally:
            if driver.poll() is None:
                os.killpg(driver.pid, signal.SIGKILL)
                driver.wait()
        assert driver.returncode == 0, err
        summary = err.strip().splitlines()[-1]
        assert f"{episodes} planned, {episodes} recorded" in summary and ", 0 failed" in summary, err
        assert int(summary.split(" retried")[0].rsplit(" ", 1)[1]) >= 2, summary  # the actor's and the node's
        planned = {p.episode_id: p for p in plan_run(SEED, RUN, episodes)}
        assert {Path(line).stem for line in out.split()} == set(planned), out

        # One uploader per node spool into one repo; each runs crash recovery first, which keeps the
        # lost node's partial as superseded instead of publishing it.
        env = cli_env(tmp_path, HF_TOKEN=TOKEN, HF_ENDPOINT=hub.endpoint)
        for spool in (a.spool, b.spool):
            done = run("gymrec-uploader", ["--spool", str(spool), "--once", "--workers", "1", "--repo-id", REPO],
                       tmp_path, env)
            assert done.returncode == 0, done.stderr
        assert _superseded(a.spool) + _superseded(b.spool), "no partial of a lost attempt was kept as superseded"
        land = landing(hub, REPO)
        assert dict(land.listed) == dict.fromkeys(planned, 1) and land.duplicates() == 0, land.listed
        for eid, meta in land.metas.items():
            assert (meta["run"], meta["plan_index"], meta["seed"]) == (RUN, planned[eid].index, planned[eid].seed)

        replayed = run("gymrec-replay", ["--all", "--repo-id", REPO, "--endpoint", hub.endpoint], tmp_path, env)
        assert replayed.returncode == 0 and replayed.stdout.count("identical") == episodes, replayed.stdout + replayed.stderr


def test_without_ray_the_flag_says_how_to_install_it(tmp_path: Path) -> None:
    """Ray hidden from the interpreter (a sitecustomize that blocks the import): one line, exit 2."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([str(BIN / "gymrec-play"), BREAKOUT, "--agent", "random", "--ray", "--episodes", "2",
                           "--spool", str(tmp_path / "spool")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "pip install 'gymrec[ray]'" in done.stderr, done.stderr
    assert not (tmp_path / "spool").exists()


@pytest.mark.parametrize("seed", [0, 7])
def test_the_plan_is_a_pure_function_of_seed_run_and_index(seed: int) -> None:
    first = plan_run(seed, "r", 5)
    assert first == plan_run(seed, "r", 5) and first[:3] == plan_run(seed, "r", 3)
    assert len({p.episode_id for p in first}) == 5 and len({p.seed for p in first}) == 5
    assert {p.episode_id for p in first}.isdisjoint(p.episode_id for p in plan_run(seed, "other", 5))
    assert all(schema.is_uuid(p.episode_id) for p in first)
    assert json.dumps([p.index for p in first]) == "[0, 1, 2, 3, 4]"


@pytest.mark.skipif(not STRESS, reason="make stress only (GYMREC_STRESS=1): a local cluster whose actors cannot start")
def test_an_env_that_cannot_start_on_the_cluster_is_one_line(tmp_path: Path) -> None:
    """``--ray`` alone: a local cluster of the run's own (its temp dir and HOME ours); every actor fails the same."""
    short = Path(tempfile.mkdtemp(prefix="gymrec-ray-", dir="/tmp"))  # Ray's socket paths: <= 107 bytes
    try:
        env = node_env(tmp_path / "unused", tmp_path / "home") | {"RAY_TMPDIR": str(short)}
        done = subprocess.run([str(BIN / "gymrec-play"), BREAKOUT, "--agent", "random", "--ray", "--episodes", "2",
                               "--env-kwarg", "frameskip=-3", "--spool", str(tmp_path / "spool")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    finally:
        shutil.rmtree(short, ignore_errors=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "frameskip" in done.stderr, done.stderr
    assert done.stdout == ""
