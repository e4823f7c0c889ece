"""Uploader paths the README promises that no other suite walks (issue 15).

Everything goes through the real CLIs: episodes are recorded by ``gymrec-play`` (its writer process),
uploaded by ``gymrec-uploader`` against the test Hub (tests/hub) with the real huggingface_hub client.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_uploader_helpers import (
    cli_env,
    landing,
    record_cli,
    run,
    stderr_lines,
    uploaded_ids,
    waiting_ids,
)
from uploader_helpers import local_index

from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import (
    UPLOADED_AREA,
    UPLOADED_LOCAL_AREA,
    partial_episodes,
    sealed_episodes,
)
from gymrec.shared.spool.episode import Episode
from tests.hub import HubServer, running_hub
from tests.reliability_helpers import committed_steps, read_journal, sigkill, start
from tests.test_recovery import PACED_AGENT

TOKEN = "hf_paths_token_3c9d"
REPO = "tester/gymrec-paths"
ENV_ID = "BreakoutNoFrameskip-v4"
# huggingface_hub's own default request timeout is 10 s; a stalled Hub must be given up on well within this
HANG_DEADLINE_S = 90  # 6 attempts of --timeout 0.5 plus the backoff between them (~31 s); --once must end


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[HubServer]:
    with running_hub(TOKEN, tmp_path) as server:
        yield server


def _hub_args(spool: Path, hub: HubServer, *extra: str) -> list[str]:
    return ["--spool", str(spool), "--repo-id", REPO, "--endpoint", hub.endpoint, "--once", *extra]


def _landed(hub: HubServer) -> set[str]:
    return set(landing(hub, REPO).metas)


def test_delete_after_upload_deletes_only_what_is_on_the_hub(tmp_path: Path, hub: HubServer) -> None:
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 2, 60, 5, tmp_path, env)}
    # a local-dir run never deletes: the local dataset is not a safe copy
    local = run("gymrec-uploader", ["--spool", str(spool), "--once", "--local-dir", str(tmp_path / "ds"),
                                    "--delete-after-upload"], tmp_path, env)  # fmt: skip
    assert local.returncode == 0, local.stderr
    assert {p.stem for p in (spool / UPLOADED_LOCAL_AREA).glob("*" + schema.SEALED_SUFFIX)} == sealed
    done = run("gymrec-uploader", _hub_args(spool, hub, "--delete-after-upload"), tmp_path, env | {"HF_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert _landed(hub) == sealed
    assert uploaded_ids(spool) == sealed, "the receipts must stay"
    left = [str(p.relative_to(spool)) for p in spool.rglob("*" + schema.SEALED_SUFFIX)]
    assert left == [], f"--delete-after-upload kept episode data: {left}"
    assert not [p.name for p in spool.iterdir() if p.name.endswith(".deleting")]


def test_uploaded_local_episodes_are_pushed_by_a_later_run_with_a_token(tmp_path: Path, hub: HubServer) -> None:
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 2, 50, 6, tmp_path, env)}
    local = run("gymrec-uploader", ["--spool", str(spool), "--once", "--local-dir", str(tmp_path / "ds")], tmp_path, env)
    assert local.returncode == 0, local.stderr
    assert set(local_index(tmp_path / "ds")) == sealed and waiting_ids(spool) == set()
    done = run("gymrec-uploader", _hub_args(spool, hub), tmp_path, env | {"HF_TOKEN": TOKEN})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("2 uploaded"), done.stdout
    assert _landed(hub) == sealed and uploaded_ids(spool) == sealed
    assert {p.stem for p in (spool / UPLOADED_AREA).glob("*" + schema.SEALED_SUFFIX)} == sealed
    again = run("gymrec-uploader", _hub_args(spool, hub), tmp_path, env | {"HF_TOKEN": TOKEN})
    assert again.returncode == 0 and again.stdout.startswith("0 uploaded"), again.stdout


def test_startup_recovery_seals_and_uploads_a_killed_recording(tmp_path: Path, workdir: Path) -> None:
    """A recorder SIGKILLed mid-episode leaves a ``.partial``; the uploader's start-up recovery seals it."""
    spool = tmp_path / "spool"
    # Paced: the writer commits at most about once a second, and an unpaced random agent seals a whole
    # Breakout episode (~0.15 s) before its first commit, so the kill would never find a committed chunk.
    (workdir / "paced_agent.py").write_text(PACED_AGENT)
    proc = start("gymrec-play", ENV_ID, "--agent", "paced_agent:act", "--headless", "--episodes", "1000", "--seed", "9",
                 "--spool", str(spool), cwd=workdir, env={"PYTHONPATH": str(workdir)})
    try:
        deadline = time.monotonic() + 60
        while not any(committed_steps(p) > 0 for p in partial_episodes(spool)):
            assert proc.poll() is None and time.monotonic() < deadline, "the recorder never committed a chunk"
            time.sleep(0.01)
    finally:
        sigkill(proc, whole_group=True)
    journals = [read_journal(p) for p in partial_episodes(spool)]  # one per recording worker
    assert journals and all(j is not None and j.steps > 0 for j in journals), journals
    done = run("gymrec-uploader", ["--spool", str(spool), "--once", "--local-dir", str(tmp_path / "ds")],
               tmp_path, cli_env(tmp_path))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert partial_episodes(spool) == [] and sealed_episodes(spool) == []
    rows = local_index(tmp_path / "ds")
    for journal in journals:
        assert journal is not None
        assert journal.episode_id in rows, "a recovered episode was not uploaded"
        assert int(rows[journal.episode_id]["row_count"]) == journal.steps, "recovery lost journaled steps"
        moved = spool / UPLOADED_LOCAL_AREA / schema.sealed_name(journal.episode_id)
        assert Episode(moved).length == journal.steps


def test_token_order_through_the_cli(tmp_path: Path, hub: HubServer) -> None:
    """HF_TOKEN beats ./.env, which beats the login cache ($HF_HOME/token)."""
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    cache = Path(env["HF_HOME"]) / "token"
    cache.parent.mkdir(parents=True, exist_ok=True)
    dotenv = tmp_path / ".env"

    def upload(seed: int, **extra: str) -> subprocess.CompletedProcess[str]:
        record_cli(spool, ENV_ID, 1, 30, seed, tmp_path, env)
        return run("gymrec-uploader", _hub_args(spool, hub), tmp_path, env | extra)

    cache.write_text(TOKEN + "\n")
    assert upload(1).returncode == 0, "the login cache alone is not used"
    dotenv.write_text("HF_TOKEN=hf_wrong_dotenv\n")
    refused = upload(2)
    assert refused.returncode != 0 and "refused the token" in stderr_lines(refused.stderr)[-1], refused.stderr
    assert "hf_wrong_dotenv" not in refused.stderr and len(waiting_ids(spool)) == 1
    assert upload(3, HF_TOKEN=TOKEN).returncode == 0, "HF_TOKEN does not beat ./.env"
    cache.write_text("hf_wrong_cache\n")
    dotenv.write_text(f"HF_TOKEN={TOKEN}\n")
    assert upload(4).returncode == 0, "./.env does not beat the login cache"
    assert len(_landed(hub)) == 4 and waiting_ids(spool) == set()


def test_403_gives_one_line_and_keeps_the_episodes_queued(tmp_path: Path, hub: HubServer) -> None:
    """A token that may read but not write the repo: the Hub answers 403 to the commit."""
    spool = tmp_path / "spool"
    env = cli_env(tmp_path, HF_TOKEN=TOKEN)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 2, 40, 7, tmp_path, env)}
    hub.fail_next("commit", 20, "403")
    done = run("gymrec-uploader", _hub_args(spool, hub), tmp_path, env)
    lines = stderr_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "HTTP 403" in lines[0] and "HF_TOKEN" in lines[0] and TOKEN not in done.stderr, lines
    assert hub.injected["commit:403"] >= 1, "the 403 never happened"
    assert hub.injected["commit:403"] == 1, "a 403 is not transient: it must not be retried"
    assert waiting_ids(spool) == sealed and uploaded_ids(spool) == set() and _landed(hub) == set()


def test_a_hung_hub_times_out_with_one_line_and_keeps_the_episode_queued(tmp_path: Path, hub: HubServer) -> None:
    spool = tmp_path / "spool"
    env = cli_env(tmp_path, HF_TOKEN=TOKEN)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 1, 40, 8, tmp_path, env)}
    hub.fail_next("commit", 20, "hang")
    try:
        done = run("gymrec-uploader", [*_hub_args(spool, hub), "--timeout", "0.5"], tmp_path, env,
                   timeout=HANG_DEADLINE_S)
    except subprocess.TimeoutExpired:  # run() kills the child before raising
        pytest.fail(f"the uploader was still waiting on a hung Hub after {HANG_DEADLINE_S}s")
    lines = stderr_lines(done.stderr)
    assert hub.injected["commit:hang"] >= 1, "the hang never happened"
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert waiting_ids(spool) == sealed and _landed(hub) == set()
