"""Suite-wide fixtures: headless pygame, a private HF cache, subprocess runners, a thread and process leak guard."""

from __future__ import annotations

import os

# huggingface_hub reads these when first imported, before any fixture could set them.
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from tests.recording import RecordingCache

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# The two tiers: `make check` runs what is not slow (unit and contract tests, < 2 minutes on 2 cores),
# `make test` runs everything. Whole modules of end-to-end runs and campaigns are slow by name here
# (measured with --durations); a single heavy test elsewhere carries @pytest.mark.slow.
SLOW_MODULES = frozenset({
    "test_reliability_recorder", "test_reliability_uploader", "test_reliability_power",  # R1-R7 campaigns
    "test_throughput", "test_real_window", "test_workers", "test_powercut_fs",
    "test_export_minari", "test_export_video", "test_uploader_hub", "test_hubserver",
    "test_dataset_human_fields", "test_integrity", "test_uploader_paths", "test_uploader_local",
    "test_readme_paths", "test_replay_sources", "test_pairing_bot", "test_real_window_help", "test_readme_commands",
    "test_export_mixed", "test_compact_crash", "test_exactly_once", "test_foreign_targets", "test_poison_pills",
    "test_duplicate_rows", "test_uploader_daemon_output", "test_ray_cluster", "test_serve_browser", "test_data_docs",
})
# Single heavy tests (module::function) in otherwise quick modules: kills and CLI subprocess tables.
SLOW_TESTS = frozenset({
    "test_recovery::test_sigkill_loses_no_step",
    "test_recorder_errors::test_bad_input",
    "test_recorder_errors::test_full_disk_keeps_the_episode_so_far",
    "test_viewer::test_a_browser_lists_and_plays_an_episode", "test_viewer::test_served_read_only_over_real_http",
})


# `make test` runs the suite on two pytest-xdist workers (most tests wait on subprocesses; a clean clone's
# pytest took 14.5 min on one, 8.5-9.7 min in the two parts on this 2-core machine), then these modules alone: a real X window, a browser reading its canvas, a Ray
# cluster's 0.5 s health checks; a test that answers frames as they are shown must not share the CPUs
# (on two workers a browser's pairing bot missed 1 frame of 41, and a window's display did not open).
SERIAL_MODULES = frozenset({
    "test_pairing", "test_pairing_bot", "test_ray_cluster", "test_readme_commands", "test_real_window",
    "test_real_window_help", "test_reliability_cluster", "test_serve_browser", "test_viewer",
})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        name = getattr(item, "originalname", item.name)
        stem = item.path.stem
        if stem in SLOW_MODULES or f"{stem}::{name}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)
        if stem in SERIAL_MODULES:
            item.add_marker(pytest.mark.serial)


@pytest.fixture(autouse=True)
def _headless_and_offline(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    home = tmp_path_factory.mktemp("hf_home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("GYMREC_DEBUG", raising=False)


def _live_children() -> set[tuple[int, float]]:
    found = set()
    for child in psutil.Process().children(recursive=True):
        try:
            # multiprocessing's resource tracker is started once per interpreter and lives as long as it does.
            if child.status() != psutil.STATUS_ZOMBIE and "resource_tracker" not in " ".join(child.cmdline()):
                found.add((child.pid, child.create_time()))
        except psutil.NoSuchProcess:
            continue
    return found


@pytest.fixture(autouse=True)
def _no_leaks() -> Iterator[None]:
    """A test that leaves a thread or a child process running fails.

    Every non-daemon thread counts, and so does any thread of gymrec's own (named ``gymrec*``, daemon or
    not) and every child process, recursively (writer processes, VizDoom engines, uploaders).
    """
    threads_before = set(threading.enumerate())
    children_before = _live_children()
    yield
    deadline = time.monotonic() + 5
    while True:
        leaked = [t.name for t in threading.enumerate()
                  if t not in threads_before and t.is_alive() and (not t.daemon or t.name.startswith("gymrec"))]
        children = _live_children() - children_before
        if (not leaked and not children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for pid, _ in children:  # don't let one leak cascade into the next test's figures
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    assert not leaked, f"leaked threads: {leaked}"
    assert not children, f"leaked child processes: {sorted(pid for pid, _ in children)}"


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[object]:
    """A Hub-compatible server on 127.0.0.1 for the real huggingface_hub/datasets clients."""
    from tests.hubserver import running_hub

    with running_hub("hf_test_token", tmp_path) as server:
        yield server


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A real full-disk: a 600 KiB tmpfs (needs root; skips with the reason otherwise)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({made.stderr.decode().strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="session")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> RecordingCache:
    """Episodes recorded once a session, copied into the spools of the tests that only upload them."""
    from tests.recording import RecordingCache  # the recorder's imports, only for the suites using it

    return RecordingCache(tmp_path_factory.mktemp("recordings"))


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary CWD: VizDoom writes _vizdoom.ini into the CWD."""
    path = tmp_path / "cwd"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def run_cli(tool: str, *args: str, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def record(env_id: str, spool: Path, cwd: Path, steps: int = 200, seed: int = 1, *extra: str) -> list[Path]:
    """Record with the random agent through the real CLI; returns the sealed episode paths."""
    proc = run_cli("gymrec-play", env_id, "--agent", "random", "--headless", "--max-steps", str(steps),
                   "--seed", str(seed), "--spool", str(spool), *extra, cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return [Path(line) for line in proc.stdout.splitlines() if line.endswith(".zarr")]


@pytest.fixture(scope="session")
def data_world(tmp_path_factory: pytest.TempPathFactory) -> object:
    """Two recorded Breakout games in a spool and in a local dataset, shared by the gymrec.data suites."""
    from tests.data_helpers import build_world

    return build_world(tmp_path_factory.mktemp("data-world"))
