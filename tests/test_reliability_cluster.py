"""R8, humans at scale the way a cluster publishes: 10 machines' spools, one gymrec-uploader each, one
repo, Hub faults on and an uploader killed mid-run; every episode is published exactly once.

``make stress`` only (GYMREC_STRESS=1): ten daemons on two cores take minutes. The Ray run itself is
tests/test_ray_cluster.py; this is the publishing half at the width a cluster has.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from reliability_uploader_helpers import (
    STRESS,
    claims_left,
    cli_env,
    kill,
    landing,
    reap,
    record_cli,
    start,
    uploaded_ids,
)

from tests import stress_results
from tests.hub import FaultPlan, running_hub

pytestmark = pytest.mark.skipif(not STRESS, reason="make stress only (GYMREC_STRESS=1): 10 uploader daemons")
TOKEN = "hf_cluster_uploaders_3b9d"
REPO = "tester/gymrec-many-machines"
ENV_ID = "BreakoutNoFrameskip-v4"
MACHINES, EPISODES, STEPS = 10, 3, 60
FAULTS = ("500", "503", "429", "drop", "drop_after")


def test_r8_ten_uploaders_on_ten_spools_into_one_repo(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    sealed: dict[int, set[str]] = {}
    for i in range(MACHINES):
        spool = tmp_path / f"machine-{i}"
        sealed[i] = {p.stem for p in record_cli(spool, ENV_ID, EPISODES, STEPS, 100 + i, tmp_path, env)}
    everything = set().union(*sealed.values())
    assert len(everything) == MACHINES * EPISODES
    rng = random.Random(8)
    started = time.monotonic()
    with running_hub(TOKEN, tmp_path) as hub:
        hub.faults = FaultPlan(rate=0.15, kinds=FAULTS, only_writes=True, seed=8)
        up_env = env | {"HF_TOKEN": TOKEN}

        def daemon(i: int, attempt: int) -> subprocess.Popen[bytes]:
            return start("gymrec-uploader", ["--spool", str(tmp_path / f"machine-{i}"), "--repo-id", REPO,
                                             "--endpoint", hub.endpoint, "--commit-every", "1", "--workers", "1",
                                             "--rescan-interval", "1"],
                         tmp_path, up_env, tmp_path / f"uploader-{i}-{attempt}")  # fmt: skip

        daemons = {i: daemon(i, 0) for i in range(MACHINES)}
        killed = rng.randrange(MACHINES)
        try:
            deadline = time.monotonic() + 900
            while not hub.has_repo(REPO) or len(hub.commits(REPO)) < 3:
                assert time.monotonic() < deadline, "nothing landed"
                time.sleep(0.2)
            kill(daemons[killed])  # SIGKILL mid-run: its claims go stale and its restart adopts them
            reap(daemons[killed])
            daemons[killed] = daemon(killed, 1)
            while set(landing(hub, REPO).metas) != everything:
                assert time.monotonic() < deadline, f"missing: {sorted(everything - set(landing(hub, REPO).metas))}"
                time.sleep(1.0)
        finally:
            codes = {i: kill(d, signal.SIGTERM) for i, d in daemons.items()}
            for d in daemons.values():
                reap(d)
        injected = sum(hub.injected.values())
        hub.faults = None
        land = landing(hub, REPO)
    assert all(code == 0 for code in codes.values()), codes
    assert land.duplicates() == 0, f"duplicates: {land.adds} {land.data_adds} (+{land.empty_commits} empty)"
    assert dict(land.listed) == dict.fromkeys(everything, 1)
    for i in range(MACHINES):
        spool = tmp_path / f"machine-{i}"
        assert uploaded_ids(spool) == sealed[i] and claims_left(spool) == [], i
    summary = (f"R8: {MACHINES} uploaders on {MACHINES} spools into one repo, {len(everything)} episodes, "
               f"{injected} injected Hub faults, uploader {killed} SIGKILLed and restarted; 0 duplicates, 0 missing "
               f"({time.monotonic() - started:.0f}s)")
    print(f"\n{summary}")
    stress_results.record("R8", summary, {"uploaders": MACHINES, "episodes": len(everything),
                                          "injected faults": injected, "duplicates": 0, "missing": 0})
