"""A real two-node Ray cluster on this machine for the --ray tests: ``ray start --head`` plus ``ray start
--address``, each node with its own --temp-dir, its own ``gymrec_node_<name>`` resource and its own spool
(``GYMREC_SPOOL`` in the environment of its ``ray start``, which Ray's workers inherit).

Each node is a ``ray start --block`` in its own session; stopping a node kills that node's whole
process tree (ray start, raylet, its workers and their writer processes), nothing else: never
``ray stop``, which stops every Ray process of the machine. Small on 2 cores: one CPU each, no
dashboard, no usage report, and a short health check so a lost node is declared dead in seconds.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
READY = b"will now block forever"  # what ray start --block says once its node is up
HEALTH = {"RAY_health_check_period_ms": "500", "RAY_health_check_failure_threshold": "4",
          "RAY_health_check_timeout_ms": "1000"}


def ray_installed() -> bool:
    # Not imported here: importing ray changes this process's environment (RAY_CLIENT_MODE), which the
    # nodes would inherit.
    return importlib.util.find_spec("ray") is not None


requires_ray = pytest.mark.skipif(not ray_installed(), reason="Ray is not installed (pip install 'gymrec[ray]')")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def node_env(spool: Path, home: Path) -> dict[str, str]:
    """A node's (or the driver's) environment: its spool, a HOME of its own (Ray keeps an auth token in
    ~/.ray that a cluster started elsewhere on the machine must not meet), tests.* importable."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GYMREC_", "RAY_"))}
    return env | HEALTH | {"GYMREC_SPOOL": str(spool), "HOME": str(home), "RAY_USAGE_STATS_ENABLED": "0",
                           "PYTHONPATH": str(REPO), "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}


@dataclass
class RayNode:
    name: str
    spool: Path
    process: subprocess.Popen[bytes]
    log: Path
    tree: dict[int, float] = field(default_factory=dict)  # pid -> start time: a recycled pid is never killed

    @property
    def resource(self) -> str:
        return f"gymrec_node_{self.name}"

    def processes(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.NoSuchProcess):
            found = [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(recursive=True)]
            for p in found:
                with contextlib.suppress(psutil.Error):
                    self.tree.setdefault(p.pid, p.create_time())
            return found
        return []

    def actor_pids(self) -> list[int]:
        """This node's recording actors (Ray names an actor's worker process ``ray::RecordingActor...``)."""
        out = []
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                if p.cmdline() and p.cmdline()[0].startswith("ray::RecordingActor"):
                    out.append(p.pid)
        return out

    def stop(self) -> None:
        """The node is lost: every process of it killed at once, as a power cut or an OOM kill would."""
        self.processes()
        for pid, started in sorted(self.tree.items()):
            if _alive(pid, started):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.process.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(_alive(pid, started) for pid, started in self.tree.items()) and time.monotonic() < deadline:
            time.sleep(0.05)


def _alive(pid: int, started: float) -> bool:
    try:
        process = psutil.Process(pid)
        return abs(process.create_time() - started) < 0.01 and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@dataclass
class RayCluster:
    root: Path
    port: int
    temp: Path  # the nodes' --temp-dir parent: short, as Ray's socket paths must fit in 107 bytes
    nodes: dict[str, RayNode] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, name: str, slots: int = 1, timeout: float = 120) -> RayNode:
        head = not self.nodes
        spool = self.root / f"spool-{name}"
        log = self.root / f"node-{name}.log"
        args = [str(BIN / "ray"), "start", "--block", f"--num-cpus={slots}", f"--temp-dir={self.temp / name}",
                f"--resources={{\"gymrec_node_{name}\": {slots}}}", "--disable-usage-stats"]
        args += (["--head", f"--port={self.port}", "--include-dashboard=false"]
                 if head else [f"--address={self.address}"])
        process = subprocess.Popen(args, cwd=self.root, env=node_env(spool, self.root / "home"), stdin=subprocess.DEVNULL,
                                   stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)  # noqa: SIM115
        node = RayNode(name, spool, process, log)
        self.nodes[name] = node
        deadline = time.monotonic() + timeout
        while READY not in log.read_bytes():
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ray start for node {name} failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        node.processes()
        return node

    def close(self) -> None:
        for node in reversed(list(self.nodes.values())):
            node.stop()


@contextlib.contextmanager
def ray_cluster(root: Path, names: tuple[str, ...] = ("a", "b"), slots: int = 1) -> Iterator[RayCluster]:
    """A cluster of ``names`` nodes (the first is the head), every process of it killed afterwards."""
    root.mkdir(parents=True, exist_ok=True)
    # Under tmp_path the session's socket paths are too long for AF_UNIX: a short directory of our own.
    cluster = RayCluster(root, free_port(), Path(tempfile.mkdtemp(prefix="gymrec-ray-", dir="/tmp")))
    try:
        for name in names:
            cluster.start(name, slots)
        yield cluster
    finally:
        cluster.close()
        shutil.rmtree(cluster.temp, ignore_errors=True)
