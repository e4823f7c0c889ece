"""Reliability of gymrec-uploader under fire: kills (R2), Hub faults (R3), races (R4), bad input (R5), token leaks (R6).

Everything runs through the real CLIs and the real huggingface_hub client against the test Hub
(tests/hubserver.py). Each suite prints its figure; ``make stress`` (GYMREC_STRESS=1) runs them at full
size, ``make test`` smaller.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from reliability_uploader_helpers import (
    STRESS,
    card_problems,
    claims_left,
    cli_env,
    episode_contents,
    kill,
    landing,
    quarantined_ids,
    reap,
    record_cli,
    run,
    size,
    start,
    stderr_lines,
    tree,
    uploaded_ids,
    waiting_ids,
    work_left,
)
from reliability_uploader_helpers import (
    card_totals as card_totals_of,
)
from uploader_helpers import local_index

from gymrec.shared.dataset import layout
from gymrec.shared.spool import schema
from gymrec.uploader.claims import QUARANTINE_AREA, REASON_SUFFIX
from tests import stress_results
from tests.hub import FaultPlan, HubServer, running_hub
from tests.recording import chunk_path
from tests.reliability_helpers import record_r5_count

TOKEN = "hf_test_token"
REPO = "tester/gymrec-reliability"
ENV_ID = "BreakoutNoFrameskip-v4"


@pytest.fixture
def hub_at(tmp_path: Path) -> Iterator[Callable[[str], HubServer]]:
    """A test Hub with a chosen token (the conftest ``hub`` fixture fixes its token)."""
    servers: list[Any] = []

    def make(token: str) -> HubServer:
        manager = running_hub(token, tmp_path)
        servers.append(manager)
        return manager.__enter__()

    yield make
    for manager in servers:
        manager.__exit__(None, None, None)


def _uploader_args(spool: Path, hub: HubServer, *extra: str) -> list[str]:
    # a short commit interval: the daemon runs commit within the suites' waits (the default is 60 s)
    return ["--spool", str(spool), "--repo-id", REPO, "--endpoint", hub.endpoint, "--commit-every", "1", *extra]


def _assert_exactly_once(hub: HubServer, spool: Path, sealed: set[str], label: str) -> tuple[int, int, int]:
    """Every sealed episode landed once, the card adds up, the spool's bookkeeping is clean."""
    land = landing(hub, REPO)
    duplicates, missing, extra = land.duplicates(), land.missing(sealed), land.extra(sealed)
    orphaned = claims_left(spool)
    assert duplicates == 0, f"{label}: duplicate episode commits {land.adds} {land.data_adds} (+{land.empty_commits} empty)"
    assert not missing, f"{label}: missing on the Hub: {sorted(missing)}"
    assert not extra, f"{label}: on the Hub but never recorded: {sorted(extra)}"
    assert not orphaned, f"{label}: orphaned claims {orphaned}"
    assert card_problems(land) == [], f"{label}: {card_problems(land)}"
    assert uploaded_ids(spool) == sealed, f"{label}: receipts for {sorted(uploaded_ids(spool) ^ sealed)} wrong"
    assert waiting_ids(spool) == set() and quarantined_ids(spool) == set()
    assert 1 < len(hub.commits(REPO)) <= 1 + len(sealed)  # the initial commit, then batches (none empty: see duplicates)
    return duplicates, len(missing), len(orphaned)


# --- R2: SIGKILL the uploader at random moments -----------------------------------------------------


def _upload_requests(hub: HubServer) -> int:
    stats = hub.stats
    return stats["preupload"] + stats["lfs_batch"] + stats["lfs_upload"] + stats["lfs_verify"]


def _commits(hub: HubServer) -> int:
    return len(hub.commits(REPO)) if hub.has_repo(REPO) else 0


def test_r2_uploader_kills(tmp_path: Path, hub_at: Callable[[str], HubServer]) -> None:
    kills = size(5, 50)
    rng = random.Random(20240502)
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 2 * kills + 4, 240, 7, tmp_path, env)}
    hub = hub_at(TOKEN)
    env |= {"HF_TOKEN": TOKEN}
    started = time.monotonic()
    phases: Counter[str] = Counter()
    hit: Counter[str] = Counter()  # what the uploader was doing when it died, as far as the spool and Hub show
    for i in range(kills):
        if not waiting_ids(spool) and not claims_left(spool):  # all landed: more work, so no kill hits an idle daemon
            sealed |= {p.stem for p in record_cli(spool, ENV_ID, 4, 240, 1000 + i, tmp_path, env)}
        phase = rng.choice(["convert", "upload", "commit-request", "after-commit", "random"])
        phases[phase] += 1
        work_before, upload_before, commit_req_before, commits_before = set(work_left(spool)), _upload_requests(hub), hub.stats["commit"], _commits(hub)
        proc = start("gymrec-uploader", _uploader_args(spool, hub), tmp_path, env, tmp_path / f"r2-{i}")
        try:
            reached = _wait(_phase_reached(phase, hub, spool, work_before, upload_before, commit_req_before, commits_before),
                            rng.uniform(0.3, 2.0) if phase == "random" else 30.0, proc)
            # a random delay inside the phase (not synchronisation: where the kill lands is what varies)
            time.sleep({"convert": rng.uniform(0, 0.15), "upload": rng.uniform(0, 0.05)}.get(phase, rng.uniform(0, 0.01)))
            assert proc.poll() is None, f"the uploader exited by itself: {(tmp_path / f'r2-{i}.stderr').read_text()[-2000:]}"
            kill(proc)
        finally:
            reap(proc)
        if phase != "random" and not reached:
            hit["idle"] += 1
        if _commits(hub) > commits_before and len(uploaded_ids(spool)) < _commits(hub) - 1:
            hit["committed, no receipt yet"] += 1
        if set(work_left(spool)) - work_before:
            hit["mid-conversion or upload"] += 1
        assert "Traceback" not in (tmp_path / f"r2-{i}.stderr").read_text()
    # restart once more to let it finish everything, then --once drains what is left
    drain = run("gymrec-uploader", _uploader_args(spool, hub, "--once"), tmp_path, env)
    assert drain.returncode == 0, drain.stderr[-3000:]
    assert "Traceback" not in drain.stderr
    duplicates, missing, orphaned = _assert_exactly_once(hub, spool, sealed, "R2")
    done = sum(phases.values())
    assert work_left(spool) == [], f"R2: leftover work dirs {work_left(spool)}"
    assert sum(n for what, n in hit.items() if what != "idle") > 0, f"R2: no kill was seen to land mid-work {dict(hit)}"
    summary = (f"R2: {done} kills, {duplicates} duplicates, {missing} missing, {orphaned} orphaned claims "
               f"({len(sealed)} episodes; phases {dict(phases)}; observed {dict(hit)}; "
               f"{len(work_left(spool))} leftover work dirs; {time.monotonic() - started:.0f}s)")
    print(f"\n{summary}")
    stress_results.record("R2", summary, {
        "kills": done, "episodes": len(sealed), "duplicates": duplicates, "missing": missing, "orphaned claims": orphaned,
        "leftover work dirs": len(work_left(spool))})


def _phase_reached(phase: str, hub: HubServer, spool: Path, work: set[str], uploads: int, commit_requests: int,
                   commits: int) -> Callable[[], bool]:
    """When the uploader (started after these counts were taken) has reached ``phase``."""
    return {
        "convert": lambda: bool(set(work_left(spool)) - work),
        "upload": lambda: _upload_requests(hub) > uploads,
        "commit-request": lambda: hub.stats["commit"] > commit_requests,
        "after-commit": lambda: _commits(hub) > commits,
        "random": lambda: False,
    }[phase]


def _wait(condition: Callable[[], bool], timeout: float, proc: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if condition():
            return True
        time.sleep(0.002)
    return False


def test_r2_killed_conversion_leaves_no_work_dir(tmp_path: Path, hub_at: Callable[[str], HubServer]) -> None:
    """A kill during conversion leaves ``.uploader-work/<id>.<owner>``; the next run must clean it up."""
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 1, 600, 3, tmp_path, env)}
    hub = hub_at(TOKEN)
    env |= {"HF_TOKEN": TOKEN}
    proc = start("gymrec-uploader", _uploader_args(spool, hub), tmp_path, env, tmp_path / "killed")
    try:
        assert _wait(lambda: bool(work_left(spool)), 60, proc), "the conversion never started"
        kill(proc)
    finally:
        reap(proc)
    assert work_left(spool), "the kill came too late to leave a work dir behind"
    drain = run("gymrec-uploader", _uploader_args(spool, hub, "--once"), tmp_path, env)
    assert drain.returncode == 0, drain.stderr
    assert uploaded_ids(spool) == sealed
    assert work_left(spool) == [], "converted files of killed uploaders pile up in the spool forever"


# --- R3: Hub faults, then a revoked token -------------------------------------------------------------

FAULTS = ("500", "503", "429", "drop", "drop_after")
RETRY_AFTER_S = 3  # longer than the first retry's own backoff (base_delay 1 s), so only honouring it passes
# make test retries the other faults after 0.25 s, not the CLI's 1 s (the same faults, the same checks,
# a wider gap to the Retry-After); make stress keeps the default backoff its figures were measured with.
R3_BACKOFF = () if STRESS else ("--backoff-base", "0.25")


def _retry_after_waits(log: list[tuple[float, str, str | None]]) -> list[float]:
    """Seconds from each 429 on "commit" to the uploader's next request (the retry's first), as the
    server's clock saw them: batches are pushed one at a time, so nothing else is sent in between."""
    return [later[0] - t for (t, endpoint, kind), later in zip(log, log[1:], strict=False)
            if endpoint == "commit" and kind == "429"]  # fmt: skip


def test_r3_hub_faults_then_revoked_token(tmp_path: Path, hub_at: Callable[[str], HubServer]) -> None:
    episodes = size(4, 20)
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, episodes, 60, 11, tmp_path, env)}
    hub = hub_at(TOKEN)
    env |= {"HF_TOKEN": TOKEN}
    hub.faults = FaultPlan(rate=0.3, kinds=FAULTS, only_writes=True, seed=3, retry_after=RETRY_AFTER_S)
    # each kind surely happens once, on the request every upload makes, besides the random ones; the 429
    # first, where the client's own backoff (<= 1 s) is shorter than the Retry-After it must wait
    for kind in sorted(FAULTS, key=lambda k: k != "429"):
        hub.fail_next("commit", 1, kind)
    started = time.monotonic()
    runs = []
    for _ in range(6):  # an episode whose retries all failed stays queued; the next run picks it up
        done = run("gymrec-uploader", _uploader_args(spool, hub, "--once", *R3_BACKOFF), tmp_path, env)
        runs.append(done.returncode)
        assert "Traceback" not in done.stderr, done.stderr[-3000:]
        assert TOKEN not in done.stdout + done.stderr
        if done.returncode == 0:
            break
        assert "stay queued" in stderr_lines(done.stderr)[-1], done.stderr[-2000:]
    injected, stats = hub.injected, hub.stats
    hub.faults = None
    assert runs[-1] == 0, f"still failing after {len(runs)} runs"
    writes = sum(n for endpoint, n in stats.items() if endpoint in ("create_repo", "preupload", "lfs_batch", "lfs_upload", "lfs_verify", "commit"))
    kinds = Counter(key.split(":")[1] for key in injected.elements())
    assert set(kinds) == set(FAULTS), f"fault kinds that never happened: {set(FAULTS) - set(kinds)}"
    waits = _retry_after_waits(hub.request_log)
    assert waits and min(waits) >= RETRY_AFTER_S * 0.95, f"Retry-After {RETRY_AFTER_S}s not waited: {waits}"
    duplicates, missing, _ = _assert_exactly_once(hub, spool, sealed, "R3")
    summary = (f"R3: {episodes} episodes through {sum(kinds.values())} injected faults in {writes} write requests "
               f"({dict(kinds)}), {duplicates} duplicates, {missing} missing, {len(runs)} run(s), "
               f"Retry-After waited {min(waits):.2f}s (asked {RETRY_AFTER_S}s, {len(waits)} 429s), "
               f"{time.monotonic() - started:.0f}s")
    print(f"\n{summary}")

    # A revoked token: one line, a non-zero exit, and every new episode stays queued, untouched.
    queued = {p.stem for p in record_cli(spool, ENV_ID, 2, 40, 99, tmp_path, env)}
    before, commits = episode_contents(spool), len(hub.commits(REPO))
    hub.revoked = True
    done = run("gymrec-uploader", _uploader_args(spool, hub, "--once"), tmp_path, env)
    lines = stderr_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "refused the token" in lines[0] and "HF_TOKEN" in lines[0] and TOKEN not in done.stderr
    assert waiting_ids(spool) == queued and claims_left(spool) == []
    assert episode_contents(spool) == before and len(hub.commits(REPO)) == commits
    revoked = f"R3: revoked token -> exit {done.returncode}, {len(lines)} stderr line, {len(queued)} episodes still queued"
    print(revoked)
    stress_results.record("R3", f"{summary}; {revoked}", {
        "episodes": episodes, "injected faults": sum(kinds.values()), "write requests": writes,
        "duplicates": duplicates, "missing": missing, f"s waited for a {RETRY_AFTER_S:g} s Retry-After": f"{min(waits):.2f}",
        "stderr line for a revoked token": len(lines), "episodes still queued after it": f"{len(queued)}/{len(queued)}"})


def test_r3_token_revoked_while_the_daemon_runs(tmp_path: Path, hub_at: Callable[[str], HubServer]) -> None:
    spool = tmp_path / "spool"
    env = cli_env(tmp_path)
    sealed = {p.stem for p in record_cli(spool, ENV_ID, 6, 120, 21, tmp_path, env)}
    hub = hub_at(TOKEN)
    env |= {"HF_TOKEN": TOKEN}
    proc = start("gymrec-uploader", _uploader_args(spool, hub), tmp_path, env, tmp_path / "daemon")
    try:
        assert _wait(lambda: _commits(hub) >= 2, 60, proc), "the first episode never landed"
        hub.revoked = True
        # a batch may have taken every waiting episode: new ones make the daemon talk to the Hub again
        sealed |= {p.stem for p in record_cli(spool, ENV_ID, 2, 60, 22, tmp_path, env)}
        code = proc.wait(timeout=60)  # it must stop by itself
    finally:
        reap(proc)
    stderr = (tmp_path / "daemon.stderr").read_text()
    errors = [line for line in stderr_lines(stderr) if "error" in line.lower()]
    assert code != 0 and "Traceback" not in stderr, stderr
    assert len(errors) == 1 and "HF_TOKEN" in errors[0] and stderr_lines(stderr)[-1] == errors[0], stderr
    landed = set(landing(hub, REPO).metas)
    assert landed and uploaded_ids(spool) == landed
    assert waiting_ids(spool) == sealed - landed and claims_left(spool) == []


# --- R4: 4 uploaders and 2 recorders on one spool -----------------------------------------------------


def test_r4_four_uploaders_two_recorders(tmp_path: Path, hub_at: Callable[[str], HubServer]) -> None:
    per_recorder, steps = size(3, 12), size(80, 200)
    spool = tmp_path / "spool"
    spool.mkdir()
    env = cli_env(tmp_path)
    hub = hub_at(TOKEN)
    up_env = env | {"HF_TOKEN": TOKEN}
    started = time.monotonic()
    uploaders = [start("gymrec-uploader", _uploader_args(spool, hub, "--workers", "1", "--rescan-interval", "1"),
                       tmp_path, up_env, tmp_path / f"uploader-{i}") for i in range(4)]  # fmt: skip
    recorders: list[subprocess.Popen[bytes]] = []
    try:
        recorders += [
            start("gymrec-play", [env_id, "--agent", "random", "--headless", "--episodes", str(per_recorder),
                                  "--max-steps", str(steps), "--seed", str(seed), "--spool", str(spool)],
                  tmp_path, env, tmp_path / f"recorder-{seed}")
            for env_id, seed in ((ENV_ID, 1), ("ALE/Pong-v5", 2))
        ]  # fmt: skip
        assert all(r.wait(timeout=300) == 0 for r in recorders), [(tmp_path / f"recorder-{s}.stderr").read_text()[-1500:] for s in (1, 2)]
        sealed = {Path(line).stem for s in (1, 2) for line in (tmp_path / f"recorder-{s}.stdout").read_text().splitlines()}
        assert len(sealed) == 2 * per_recorder
        deadline = time.monotonic() + 240
        while set(landing(hub, REPO).metas) != sealed and time.monotonic() < deadline:
            assert all(u.poll() is None for u in uploaders), "an uploader died"
            time.sleep(0.5)
    finally:
        codes = [kill(u, signal.SIGTERM) for u in uploaders]
        for p in [*uploaders, *recorders]:
            reap(p)
    outs = [(tmp_path / f"uploader-{i}.stdout").read_text() for i in range(4)]
    errs = [(tmp_path / f"uploader-{i}.stderr").read_text() for i in range(4)]
    assert codes == [0, 0, 0, 0], errs
    assert not any("Traceback" in e or "ERROR" in e for e in errs), errs
    counts = [int(out.split()[0]) for out in outs]  # "<n> uploaded to the Hub, <m> already there, ..."
    assert sum(counts) == len(sealed), outs
    duplicates, missing, orphaned = _assert_exactly_once(hub, spool, sealed, "R4")
    land = landing(hub, REPO)
    front, _rows = card_totals_of(land.readme)
    assert {c["config_name"] for c in front["configs"]} == {"breakoutnoframeskip-v4", "ale-pong-v5"}
    summary = (f"R4: 4 uploaders x 2 recorders, {len(sealed)} episodes, {duplicates} duplicates, {missing} missing, "
               f"{orphaned} orphaned claims, card totals right (uploads per uploader {counts}; "
               f"{hub.stats['commit']} commit requests for {len(sealed)} commits; {time.monotonic() - started:.0f}s)")
    print(f"\n{summary}")
    stress_results.record("R4", summary, {
        "uploaders": 4, "recorders": 2, "episodes": len(sealed), "duplicates": duplicates, "missing": missing,
        "orphaned claims": orphaned})


# --- R5: bad input ---------------------------------------------------------------------------------------


@dataclass
class Ctx:
    tmp: Path
    spool: Path
    hub: HubServer
    a: Path  # the episode a case damages
    b: Path  # a good episode that must still be uploaded when the run goes on


def _set_attr(key: str, value: Any) -> Callable[[Ctx], None]:
    def mutate(c: Ctx) -> None:
        doc = json.loads((c.a / schema.METADATA_NAME).read_text())
        if value is None:
            del doc["attributes"][key]
        else:
            doc["attributes"][key] = value
        (c.a / schema.METADATA_NAME).write_text(json.dumps(doc))

    return mutate


def _corrupt_chunk(c: Ctx) -> None:
    chunk_path(c.a, "obs/frame", 0).write_bytes(b"not zstd at all")


def _flip_where_zstd_still_decodes(c: Ctx) -> None:
    from tests.replay_helpers import flip_a_decodable_bit

    flip_a_decodable_bit(chunk_path(c.a, "obs/frame", 0))


def _foreign_chunk(c: Ctx) -> None:
    """Issue 13.2: episode b's frame chunk in episode a: a valid chunk and crc32c, the wrong frames."""
    shutil.copyfile(chunk_path(c.b, "obs/frame", 0), chunk_path(c.a, "obs/frame", 0))


def _foreign_chunk_resigned(c: Ctx) -> None:
    """The foreign frame chunk as a deliberate edit would leave it (digests re-signed): only the frame
    hashes, which the uploader checks as it decodes, still tell."""
    from tests.replay_helpers import redigest

    _foreign_chunk(c)
    redigest(c.a)


def _add_empty(c: Ctx) -> None:
    from uploader_helpers import record_episode

    c.a = record_episode(c.spool, ENV_ID, 0, seed=5)  # sealed with no steps


def _spool_file(c: Ctx) -> None:
    c.spool = c.tmp / "spool-file"
    c.spool.write_text("keep me\n")


def _rename_not_uuid(c: Ctx) -> None:
    c.a = c.a.rename(c.a.with_name("holiday" + schema.SEALED_SUFFIX))


def _dotenv(content: bytes) -> Callable[[Ctx], None]:
    return lambda c: (c.tmp / ".env").write_bytes(content)  # the uploader runs in c.tmp


def _alien_partial(c: Ctx) -> None:
    (c.spool / "backup.partial").mkdir()  # issue 13.4: not ours


# issue 21: exactly once per episode id, foreign targets, poison pills, one-line errors


def _upload_first(keep: Callable[[Ctx, Path], None]) -> Callable[[Ctx], None]:
    """Upload a copy of the spool (``keep`` edits it first) to the test Hub before the case's run."""

    def setup(c: Ctx) -> None:
        copy = c.tmp / "copy"
        shutil.copytree(c.spool, copy)
        keep(c, copy)
        done = run("gymrec-uploader", ["--spool", str(copy), "--endpoint", c.hub.endpoint, "--once", "--repo-id", REPO],
                   c.tmp, cli_env(c.tmp, HF_TOKEN=TOKEN))  # fmt: skip
        assert done.returncode == 0, done.stderr

    return setup


def _backup_restored(c: Ctx, copy: Path) -> None:
    """The copy is the spool as it was; after its upload the spool here is that backup, restored."""


def _other_machine(c: Ctx, copy: Path) -> None:
    shutil.rmtree(copy / c.b.name)  # the other machine holds only episode a


THEIRS = {layout.CARD_PATH: b"# my notes\n", "data/train-00000.parquet": b"PAR1 not ours PAR1"}


def _theirs_on_the_hub(c: Ctx) -> None:
    c.hub.seed_repo(REPO, THEIRS)


def _theirs_only(hub: HubServer) -> bool:
    return {k: v for k, v in hub.files(REPO).items() if k != ".gitattributes"} == THEIRS


def _theirs_locally(c: Ctx) -> None:
    for rel, data in THEIRS.items():
        (c.tmp / "theirs" / rel).parent.mkdir(parents=True, exist_ok=True)
        (c.tmp / "theirs" / rel).write_bytes(data)


def _poison_meta(kind: str) -> Callable[[Ctx], None]:
    def setup(c: Ctx) -> None:
        meta = c.a / schema.METADATA_NAME
        meta.unlink()
        if kind == "fifo":
            os.mkfifo(meta)
        elif kind == "dev-zero":
            meta.symlink_to("/dev/zero")
        elif kind == "socket":
            with socket.socket(socket.AF_UNIX) as sock, contextlib.chdir(c.a):  # AF_UNIX paths are short
                sock.bind(meta.name)
        else:
            with open(meta, "wb") as f:
                f.truncate(8 << 30)  # sparse

    return setup


def _symlink_loop(c: Ctx) -> None:
    loop = c.spool / schema.sealed_name("0b5e8c1e-2a49-4bb5-9d7c-3f0a1c2d4e5f")
    loop.symlink_to(loop.name)


@dataclass(frozen=True)
class Bad:
    name: str
    args: Callable[[Ctx], list[str]]
    setup: Callable[[Ctx], None] = lambda c: None
    needles: tuple[str, ...] = ()  # in the one error line; empty: the run succeeds (exit 0)
    a_goes_to: str = "waiting"  # where episode a ends: waiting, quarantine, uploaded, untouched
    reason: str = ""  # in the quarantine reason
    token: str | None = TOKEN  # None: no HF_TOKEN at all (and no login cache in the test's HOME)
    warns: str = ""  # a run that succeeds says this exactly once on stderr
    known_bug: str = ""  # a product bug another helper fixes: the case is an xfail while it reproduces


def _once(*extra: str) -> Callable[[Ctx], list[str]]:
    return lambda c: ["--spool", str(c.spool), "--endpoint", c.hub.endpoint, "--once", *extra]


def _flag(flag: str, value: str) -> Bad:
    return Bad(f"{flag} {value}", _once("--repo-id", REPO, flag, value), needles=(flag,))


REPO_HINT = ("not a valid repo id", "OWNER/NAME")
NEEDS_TOKEN = ("needs a Hub token",)
BAD = [
    Bad("repo id ../x", _once("--repo-id", "../x"), needles=REPO_HINT),
    Bad("repo id a/../../b", _once("--repo-id", "a/../../b"), needles=REPO_HINT),
    Bad("repo id /abs", _once("--repo-id", "/abs"), needles=REPO_HINT),
    Bad("repo id a/b/c", _once("--repo-id", "a/b/c"), needles=REPO_HINT),
    Bad("repo id empty", _once("--repo-id", ""), needles=REPO_HINT),
    Bad("spool is a file", _once("--repo-id", REPO), _spool_file, needles=("is a file",)),
    Bad("spool missing", lambda c: ["--spool", str(c.tmp / "nope"), "--once", "--repo-id", REPO], needles=("does not exist",)),
    Bad("spool name of 300 characters", lambda c: ["--spool", str(c.tmp / ("x" * 300)), "--once", "--repo-id", REPO],
        needles=("too long", "--spool")),
    Bad("status: spool missing", lambda c: ["status", "--spool", str(c.tmp / "nope")], needles=("does not exist",)),
    Bad("status: spool is a file", lambda c: ["status", "--spool", str(c.spool)], _spool_file, needles=("is a file",)),
    Bad("local dir is a file", lambda c: ["--spool", str(c.spool), "--once", "--local-dir", str(c.tmp / "file")],
        lambda c: (c.tmp / "file").write_text("x"), needles=("is a file",)),
    Bad("bad token", _once("--repo-id", REPO), needles=("refused the token", "HF_TOKEN"), token="hf_not_the_token_123"),
    # issue 13.9: token and config hygiene
    Bad("token with a trailing newline", _once("--repo-id", REPO), token=TOKEN + "\n", a_goes_to="uploaded"),
    Bad("token with spaces around it", _once("--repo-id", REPO), token=f"  {TOKEN} ", a_goes_to="uploaded"),
    Bad("explicit --repo-id, no token", _once("--repo-id", REPO), needles=("--repo-id", *NEEDS_TOKEN), token=None),
    Bad("explicit --endpoint, no token", _once(), needles=("--endpoint", *NEEDS_TOKEN), token=None),
    Bad(".env: the first HF_TOKEN= is empty", _once("--repo-id", REPO), _dotenv(b"HF_TOKEN=\n"),
        needles=NEEDS_TOKEN, token=None),
    Bad(".env: a non-UTF-8 byte", _once("--repo-id", REPO), _dotenv(b"A=1\nHF_TOKEN=\xff\n"), needles=(".env:2:",), token=None),
    Bad(".env: a line that is not KEY=VALUE", _once("--repo-id", REPO), _dotenv(b"A=1\nnot a pair\n"), needles=(".env:2:",),
        token=None),
    Bad(".env: an unclosed quote", _once("--repo-id", REPO), _dotenv(b"HF_TOKEN='open\n"), needles=(".env:1:",), token=None),
    # issue 13.3: every numeric flag rejects nan, inf and absurd values
    Bad("workers 0", _once("--repo-id", REPO, "--workers", "0"), needles=("--workers",)),
    _flag("--commit-every", "nan"), _flag("--timeout", "nan"), _flag("--stale-after", "inf"),
    _flag("--rescan-interval", "nan"), _flag("--batch-mb", "nan"), _flag("--min-active", "nan"),
    _flag("--batch-episodes", "0"),
    # damaged episodes are quarantined with a reason, never published; the others still upload
    Bad("corrupt chunk", _once("--repo-id", REPO), _corrupt_chunk, a_goes_to="quarantine", reason="obs/frame"),
    Bad("frame bit flip zstd still decodes", _once("--repo-id", REPO), _flip_where_zstd_still_decodes,
        a_goes_to="quarantine", reason="crc32c"),
    Bad("frame chunk from another episode", _once("--repo-id", REPO), _foreign_chunk, a_goes_to="quarantine",
        reason="not the ones this episode sealed"),
    Bad("frame chunk from another episode, digests re-signed", _once("--repo-id", REPO), _foreign_chunk_resigned,
        a_goes_to="quarantine", reason="does not match its stored hash"),
    Bad("wrong schema_version", _once("--repo-id", REPO), _set_attr("schema_version", 99), a_goes_to="quarantine", reason="schema_version"),
    Bad("missing attribute", _once("--repo-id", REPO), _set_attr("seed", None), a_goes_to="quarantine", reason="seed"),
    Bad("zarr.json not JSON", _once("--repo-id", REPO), lambda c: (c.a / schema.METADATA_NAME).write_text("{not json"),
        a_goes_to="quarantine", reason="not a readable Zarr group"),
    Bad("episode_id attribute escapes", _once("--repo-id", REPO), _set_attr("episode_id", "../../../../../escape"),
        a_goes_to="quarantine", reason="episode_id"),
    Bad("empty episode", _once("--repo-id", REPO), _add_empty, a_goes_to="untouched"),
    Bad("episode dir not a UUID", _once("--repo-id", REPO), _rename_not_uuid, a_goes_to="untouched"),
    # issue 13.4: nothing in the spool blocks the rest of it
    Bad("mkdir S/backup.partial", _once("--repo-id", REPO), _alien_partial, a_goes_to="uploaded",
        warns="backup.partial is not a gymrec episode"),
    # issue 21.1: exactly once per episode id, wherever the bytes come from
    Bad("spool restored from a backup", _once("--repo-id", REPO), _upload_first(_backup_restored), a_goes_to="uploaded"),
    Bad("a copy of the spool uploaded from another machine", _once("--repo-id", REPO), _upload_first(_other_machine),
        a_goes_to="uploaded"),
    # issue 21.2: never touch what isn't ours
    Bad("Hub repo holding someone else's dataset", _once("--repo-id", REPO), _theirs_on_the_hub,
        needles=("no gymrec dataset", "--force-adopt")),
    Bad("--force-adopt someone else's Hub repo", _once("--repo-id", REPO, "--force-adopt"), _theirs_on_the_hub,
        a_goes_to="uploaded", warns="adopting"),
    Bad("--local-dir holding someone else's files", lambda c: ["--spool", str(c.spool), "--once", "--local-dir", str(c.tmp / "theirs")],
        _theirs_locally, needles=("no gymrec dataset", "--force-adopt")),
    Bad("--local-dir not UTF-8", lambda c: ["--spool", str(c.spool), "--once", "--local-dir", str(c.tmp / "bad\udcffname")],
        needles=("not a UTF-8 name",)),
    # issue 21.4: no poison pills
    Bad("zarr.json is a FIFO", _once("--repo-id", REPO), _poison_meta("fifo"), a_goes_to="quarantine", reason="not a regular file"),
    Bad("zarr.json links to /dev/zero", _once("--repo-id", REPO), _poison_meta("dev-zero"), a_goes_to="quarantine",
        reason="symbolic links"),
    Bad("zarr.json is a socket", _once("--repo-id", REPO), _poison_meta("socket"), a_goes_to="quarantine",
        reason="not a readable Zarr group"),
    Bad("zarr.json of 8 GB", _once("--repo-id", REPO), _poison_meta("huge"), a_goes_to="quarantine", reason="bytes, more than"),
    Bad("symlink loop named <uuid>.zarr", _once("--repo-id", REPO), _symlink_loop, a_goes_to="uploaded", warns="not an episode"),
]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("r5-template")
    record_cli(tmp / "spool", ENV_ID, 2, 50, 4, tmp, cli_env(tmp))
    return tmp / "spool"


@pytest.fixture(scope="module")
def r5_ran(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    """The uploader's R5 cases that ran (their command returned and was checked), summed up at the end."""
    ran: list[str] = []
    yield ran
    selected = [i for i in request.session.items if i.module is request.module and i.originalname in R5_TESTS]
    total = record_r5_count(request.config, "gymrec-uploader", len(ran))
    summary = f"R5: {len(ran)} cases ran for gymrec-uploader ({len(selected)} selected){total}"
    print(f"\n{summary}")
    assert len(ran) == len(selected), f"{len(selected) - len(ran)} selected R5 uploader cases did not get to the end"
    if len(selected) == len(BAD) + len(LOCAL_BAD) + 3:  # the whole catalogue (plus the full-disk cases)
        assert len(ran) >= R5_UPLOADER_MIN, f"only {len(ran)} R5 uploader cases ran"
        if request.session.testsfailed == 0:  # a failed case's figures are not the suite's
            stress_results.record("R5 uploader", summary, {
                "cases ran": len(ran), "spool files changed": 0, "known bugs": sum(bool(c.known_bug) for c in BAD)})


def _listed_ids(hub: HubServer) -> list[str]:
    """Every episode id the test repo's index lists, once per index row (a duplicate shows twice)."""
    return [eid for path, blob in hub.files(REPO).items() if layout.is_index_path(path)
            for eid in pq.read_table(io.BytesIO(blob), columns=["episode_id"]).column("episode_id").to_pylist()]  # fmt: skip


def _check_bad_input(case: Bad, c: Ctx, done: subprocess.CompletedProcess[str], before_tree: dict[str, str],
                     before_file: bytes | None, before: dict[tuple[str, str], str]) -> None:
    lines = stderr_lines(done.stderr)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert case.token is None or case.token.strip() not in done.stdout + done.stderr
    if before_file is not None:
        assert c.spool.read_bytes() == before_file
    assert not list(c.tmp.rglob("escape*")), "a file was written outside the dataset layout"
    if case.needles:  # an error: one line, non-zero, nothing claimed, moved or changed, nothing pushed
        assert done.returncode != 0 and len(lines) == 1, done.stderr
        assert all(n in lines[0] for n in case.needles), lines[0]
        assert lines[0].startswith("gymrec-uploader: error: "), lines[0]
        if c.spool.is_dir():
            assert tree(c.spool) == before_tree
        assert not (c.tmp / "nope").exists()
        if (c.tmp / "theirs").exists():
            assert tree(c.tmp / "theirs") == {k: hashlib.sha256(v).hexdigest() for k, v in THEIRS.items()}, "their files changed"
        repos = [k[1] for k in c.hub.state._repos]  # noqa: SLF001 (the test Hub's own state)
        assert repos in ([], [REPO]) and (not repos or _theirs_only(c.hub)), "something reached the Hub"
        return
    assert done.returncode == 0, done.stderr[-3000:]
    if case.warns:
        assert done.stderr.count(case.warns) == 1, done.stderr
    assert episode_contents(c.spool) == before, "an episode's files were changed or deleted"
    assert claims_left(c.spool) == []
    assert c.b.stem in uploaded_ids(c.spool) and c.b.stem in landing(c.hub, REPO).metas, "the good episode was not uploaded"
    assert max(Counter(_listed_ids(c.hub)).values(), default=1) == 1, "an episode was published twice"
    if case.warns == "adopting":
        assert all(c.hub.files(REPO)[k] == v for k, v in THEIRS.items()), "their files changed"
    if case.a_goes_to == "quarantine":
        assert quarantined_ids(c.spool) == {c.a.stem} and not c.a.exists()
        reason = (c.spool / QUARANTINE_AREA / (c.a.stem + REASON_SUFFIX)).read_text()
        assert case.reason in reason and len(reason.strip().splitlines()) == 1, reason
        assert "1 quarantined" in done.stdout and c.a.stem not in landing(c.hub, REPO).metas, "published anyway"
    elif case.a_goes_to == "uploaded":
        assert c.a.stem in uploaded_ids(c.spool) and c.a.stem in landing(c.hub, REPO).metas
    else:
        assert c.a.is_dir() and c.a.parent == c.spool, "the episode was moved"
        landed = set(landing(c.hub, REPO).metas)
        assert quarantined_ids(c.spool) == set() and c.a.stem not in landed and uploaded_ids(c.spool) == landed


@pytest.mark.parametrize("case", BAD, ids=[c.name for c in BAD])
def test_r5_bad_input(case: Bad, template: Path, tmp_path: Path, hub_at: Callable[[str], HubServer],
                      r5_ran: list[str]) -> None:
    spool = tmp_path / "spool"
    shutil.copytree(template, spool)
    a, b = sorted(spool.glob("*" + schema.SEALED_SUFFIX))
    c = Ctx(tmp_path, spool, hub_at(TOKEN), a, b)
    case.setup(c)
    before_tree = tree(c.spool) if c.spool.is_dir() else {}
    before_file = c.spool.read_bytes() if c.spool.is_file() else None
    before = episode_contents(c.spool) if c.spool.is_dir() else {}
    env = cli_env(tmp_path, **({} if case.token is None else {"HF_TOKEN": case.token}))
    done = run("gymrec-uploader", case.args(c), tmp_path, env)
    r5_ran.append(case.name)
    try:
        _check_bad_input(case, c, done, before_tree, before_file, before)
    except AssertionError as e:
        if not case.known_bug:
            raise
        pytest.xfail(f"{case.known_bug} (seen: {str(e)[:300]})")


# The local dataset (no token): a rerun repairs what a killed or blocked run left (issue 13.10).


@dataclass(frozen=True)
class LocalBad:
    name: str
    damage: Callable[[Path], None]  # applied to the local dataset after a first, complete upload
    needles: tuple[str, ...] = ()  # in the one error line; empty: the rerun succeeds and repairs
    unblock: Callable[[Path], None] | None = None  # then a second rerun must succeed and repair


def _block_card(dataset: Path) -> None:
    (dataset / layout.CARD_PATH).unlink()
    (dataset / layout.CARD_PATH).mkdir()


STRAYS = (f"{layout.META_DIR}/.info.json.tmp", ".README.md.tmp", f"{layout.META_DIR}/.pending.json.tmp")


def _strays(dataset: Path) -> None:
    for rel in STRAYS:
        (dataset / rel).write_bytes(b"half a write")


LOCAL_BAD = [
    LocalBad("card missing", lambda d: (d / layout.CARD_PATH).unlink()),
    LocalBad("card stale", lambda d: (d / layout.CARD_PATH).write_text("---\nold card\n---\n")),
    LocalBad("stray temporary files", _strays),
    LocalBad("card path blocked once", _block_card, needles=(layout.CARD_PATH, "Is a directory"),
             unblock=lambda d: (d / layout.CARD_PATH).rmdir()),
    # issue 21 item 2: a damaged or lost info.json is rebuilt from every shard and index (the same info, the same card)
    LocalBad("info.json not JSON", lambda d: (d / layout.INFO_PATH).write_text("{")),
    LocalBad("info.json missing", lambda d: (d / layout.INFO_PATH).unlink()),
]


@pytest.fixture(scope="module")
def local_template(template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's episodes, uploaded once into a local dataset: ``spool`` and ``dataset`` side by side."""
    tmp = tmp_path_factory.mktemp("r5-local")
    shutil.copytree(template, tmp / "spool")
    done = run("gymrec-uploader", ["--spool", str(tmp / "spool"), "--once", "--local-dir", str(tmp / "dataset")], tmp, cli_env(tmp))
    assert done.returncode == 0 and done.stdout.startswith("2 uploaded"), done.stderr
    return tmp


@pytest.mark.parametrize("case", LOCAL_BAD, ids=[c.name for c in LOCAL_BAD])
def test_r5_local_dataset_rerun(case: LocalBad, local_template: Path, tmp_path: Path, r5_ran: list[str]) -> None:
    for part in ("spool", "dataset"):
        shutil.copytree(local_template / part, tmp_path / part)
    spool, dataset = tmp_path / "spool", tmp_path / "dataset"
    card = (dataset / layout.CARD_PATH).read_text().replace(str(local_template / "dataset"), str(dataset))  # names its dir
    listed = set(local_index(dataset))
    case.damage(dataset)
    before_spool, before_data = tree(spool), tree(dataset)
    args = ["--spool", str(spool), "--once", "--local-dir", str(dataset)]
    done = run("gymrec-uploader", args, tmp_path, cli_env(tmp_path))
    r5_ran.append(case.name)
    lines = stderr_lines(done.stderr)
    assert "Traceback" not in done.stderr and tree(spool) == before_spool, done.stderr[-3000:]
    if case.needles:
        assert done.returncode != 0 and len(lines) == 1 and all(n in lines[0] for n in case.needles), done.stderr
        assert {k: v for k, v in tree(dataset).items() if not k.startswith(".")} == {
            k: v for k, v in before_data.items() if not k.startswith(".")}, "the dataset was changed"
        if case.unblock is None:
            return
        case.unblock(dataset)
        done = run("gymrec-uploader", args, tmp_path, cli_env(tmp_path))
    assert done.returncode == 0 and done.stdout.startswith("0 uploaded"), done.stderr
    assert (dataset / layout.CARD_PATH).read_text() == card, "the card was not repaired"
    assert not [p for p in dataset.rglob(".*.tmp")], "stray temporary files were left"
    assert set(local_index(dataset)) == listed, "the dataset's episodes changed"


R5_TESTS = ("test_r5_bad_input", "test_r5_local_dataset_rerun", "test_r5_full_disk", "test_r5_full_dataset_disk")
R5_UPLOADER_MIN = 40


# --- R6: the token never leaks ------------------------------------------------------------------------

LEAK = "hf_LEAKCANARY1234567890abcdef"
LEAK_CORE = LEAK[3:].encode()  # also catches a masked or re-prefixed copy


def test_r6_token_leaks(tmp_path: Path, hub_at: Callable[[str], HubServer]) -> None:
    hub = hub_at(LEAK)
    spool = tmp_path / "spool"
    env = cli_env(tmp_path, HF_TOKEN=LEAK, HF_ENDPOINT=hub.endpoint)
    streams: dict[str, str] = {}

    def step(name: str, tool: str, args: list[str], expect_ok: bool, cwd: Path = tmp_path, environ: dict[str, str] = env) -> subprocess.CompletedProcess[str]:
        done = run(tool, args, cwd, environ)
        streams[f"{name}.stdout"], streams[f"{name}.stderr"] = done.stdout, done.stderr
        assert (done.returncode == 0) == expect_ok, f"{name}: {done.returncode} {done.stderr[-2000:]}"
        return done

    record = ["--agent", "random", "--headless", "--max-steps", "40", "--spool", str(spool)]
    step("record", "gymrec-play", [ENV_ID, "--episodes", "2", "--seed", "1", *record], True)
    step("upload", "gymrec-uploader", ["--spool", str(spool), "--repo-id", REPO, "--once", "-v"], True)
    step("status", "gymrec-uploader", ["status", "--spool", str(spool)], True)
    eid = sorted(uploaded_ids(spool))[0]
    step("replay", "gymrec-replay", [eid, "--repo-id", REPO, "--endpoint", hub.endpoint], True)
    step("replay-all", "gymrec-replay", ["--all", "--repo-id", REPO, "--local-dir", str(tmp_path / "download")], True)
    step("record-debug", "gymrec-play", [ENV_ID, "--seed", "2", *record], True)
    step("upload-debug", "gymrec-uploader", ["--spool", str(spool), "--repo-id", REPO, "--once", "-v"], True,
         environ=env | {"GYMREC_DEBUG": "1"})  # fmt: skip
    # the token from a .env file in the CWD instead of the environment
    dotenv_cwd = tmp_path / "dotenv-cwd"
    dotenv_cwd.mkdir()
    (dotenv_cwd / ".env").write_text(f"HF_TOKEN={LEAK}\n")
    no_env = {k: v for k, v in env.items() if k != "HF_TOKEN"}
    step("record-dotenv", "gymrec-play", [ENV_ID, "--seed", "3", *record], True, dotenv_cwd, no_env)
    step("upload-dotenv", "gymrec-uploader", ["--spool", str(spool), "--repo-id", REPO, "--once"], True, dotenv_cwd, no_env)
    # failing runs: a revoked token
    step("record-revoked", "gymrec-play", [ENV_ID, "--seed", "4", *record], True)
    hub.revoked = True
    step("upload-revoked", "gymrec-uploader", ["--spool", str(spool), "--repo-id", REPO, "--once"], False)
    step("upload-revoked-debug", "gymrec-uploader", ["--spool", str(spool), "--repo-id", REPO, "--once", "-v"], False,
         environ=env | {"GYMREC_DEBUG": "1"})  # fmt: skip
    step("replay-revoked", "gymrec-replay", [eid, "--repo-id", REPO, "--endpoint", hub.endpoint, "--local-dir", str(tmp_path / "dl2")], False)
    hub.revoked = False
    assert len(uploaded_ids(spool)) == 4 and len(waiting_ids(spool)) == 1

    hits: dict[str, int] = {}
    for name, text in streams.items():
        hits[name] = text.encode().count(LEAK_CORE)
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p != dotenv_cwd / ".env"]
    for path in files:  # spool, HF_HOME caches, downloads, HOME, the server's object store, logs
        hits[str(path.relative_to(tmp_path))] = path.read_bytes().count(LEAK_CORE)
    for path, data in hub.files(REPO).items():
        hits[f"hub:{path}"] = data.count(LEAK_CORE)
    for commit in hub.commits(REPO):
        hits[f"hub-commit:{commit.oid[:8]}"] = f"{commit.title}\n{commit.message}".encode().count(LEAK_CORE)
    leaks = {k: v for k, v in hits.items() if v}
    scanned_spool = sum(1 for p in files if spool in p.parents)
    scanned_cache = sum(1 for p in files if tmp_path / "hf-home" in p.parents)
    summary = (f"R6: scanned {len(hits)} files/streams ({len(streams)} streams, {scanned_spool} spool files, "
               f"{scanned_cache} HF cache files, {len(hub.files(REPO))} dataset files incl. the card), "
               f"{sum(leaks.values())} token occurrences")
    print(f"\n{summary}")
    assert (tmp_path / "hf-home").is_dir() and scanned_cache > 0 and scanned_spool > 0
    assert not leaks, leaks
    stress_results.record("R6", summary, {"files and streams scanned": len(hits),
                                          "token occurrences": sum(leaks.values())})




def test_r5_full_disk(tiny_disk: Path, template: Path, tmp_path: Path, hub_at: Callable[[str], HubServer],
                      r5_ran: list[str]) -> None:
    """The spool's disk fills up with the converted files: one line, non-zero, every episode still queued."""
    spool = tiny_disk / "spool"
    shutil.copytree(template, spool)
    (tiny_disk / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(tiny_disk).free - 24 * 1024))
    hub = hub_at(TOKEN)
    before, queued = episode_contents(spool), waiting_ids(spool)
    done = run("gymrec-uploader", _uploader_args(spool, hub, "--once"), tmp_path, cli_env(tmp_path, HF_TOKEN=TOKEN))
    r5_ran.append("full disk")
    lines = stderr_lines(done.stderr)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert len(lines) == 1 and "disk" in lines[0] and "full" in lines[0], done.stderr[-3000:]
    assert episode_contents(spool) == before and waiting_ids(spool) == queued and claims_left(spool) == []
    assert work_left(spool) == []
    # with space again, the next run finishes the job exactly once (some episodes may already be on the Hub)
    (tiny_disk / "filler").unlink()
    again = run("gymrec-uploader", _uploader_args(spool, hub, "--once"), tmp_path, cli_env(tmp_path, HF_TOKEN=TOKEN))
    assert again.returncode == 0, again.stderr[-2000:]
    _assert_exactly_once(hub, spool, queued, "full disk")


def _fill(disk: Path, leave: int) -> None:
    (disk / "filler").write_bytes(b"\0" * max(0, shutil.disk_usage(disk).free - leave))


@pytest.mark.parametrize("command", ["upload", "compact"])
def test_r5_full_dataset_disk(command: str, tiny_disk: Path, template: Path, tmp_path: Path, r5_ran: list[str]) -> None:
    """The --local-dir's disk fills up (issue 21.6): one line naming the dataset's disk, not the spool's;
    the spool and the dataset as they were; with space again the rerun finishes, each episode once."""
    spool, dataset = tmp_path / "spool", tiny_disk / "dataset"
    shutil.copytree(template, spool)
    env = cli_env(tmp_path)
    upload = ["--spool", str(spool), "--once", "--local-dir", str(dataset), "--batch-episodes", "1"]
    args = upload if command == "upload" else ["compact", "--local-dir", str(dataset)]
    if command == "compact":
        done = run("gymrec-uploader", upload, tmp_path, env)
        assert done.returncode == 0, done.stderr
    _fill(tiny_disk, 2048 if command == "compact" else 24 * 1024)
    before_spool, queued = episode_contents(spool), waiting_ids(spool)
    before_data = {k: v for k, v in tree(dataset).items() if not k.startswith(".")} if dataset.is_dir() else {}
    done = run("gymrec-uploader", args, tmp_path, env)
    r5_ran.append(f"full dataset disk ({command})")
    lines = stderr_lines(done.stderr)
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "full" in lines[0] and str(dataset) in lines[0] and "spool" not in lines[0], lines[0]
    assert episode_contents(spool) == before_spool and waiting_ids(spool) == queued and claims_left(spool) == []
    if command == "compact":
        assert {k: v for k, v in tree(dataset).items() if not k.startswith(".")} == before_data, "the dataset changed"
    (tiny_disk / "filler").unlink()
    again = run("gymrec-uploader", args, tmp_path, env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert set(local_index(dataset)) == {p.stem for p in template.glob("*" + schema.SEALED_SUFFIX)}
