"""Joining the Ray cluster for one run, and the run's last line."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gymrec.recorder.cluster.driver import NODE_RESOURCE_PREFIX, RunResult
from gymrec.shared.errors import ClusterError

LOCAL = "local"  # --ray alone: a one-node cluster started for this run
LOCAL_NODE = NODE_RESOURCE_PREFIX + "local"


@contextlib.contextmanager
def connect(ray: Any, address: str, workers: int | None, spool: Path | None, cpus: int = 2) -> Iterator[None]:
    """Ray initialised for the run (a local cluster for ``LOCAL``), shut down after it.

    ``spool``: the spool path every node's actors use (a runtime env variable); None leaves each node
    its own ``GYMREC_SPOOL``.
    """
    runtime_env = {"env_vars": {"GYMREC_SPOOL": str(spool)}} if spool is not None else None
    options: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False, "runtime_env": runtime_env}
    if address == LOCAL:
        slots = workers or cpus
        options |= {"address": "local", "num_cpus": slots, "resources": {LOCAL_NODE: slots},
                    "include_dashboard": False}
    else:
        options["address"] = address
    with _stdout_to_stderr():
        try:
            ray.init(**options)
        except (ConnectionError, RuntimeError, ValueError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ClusterError(f"cannot join the Ray cluster at {address}: {first}",
                               "start it with ray start --head, or give its address to --ray") from e
        try:
            yield
        finally:
            ray.shutdown()


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Ray's own messages (a node marked dead, its start-up) go to file descriptor 1, from threads we do
    not own: while Ray runs, that is stderr, so stdout stays the sealed paths a script reads."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def run_summary(result: RunResult, run: str, seed: int) -> str:
    """planned / recorded / retried / failed, with the run's name and seed (to resume or re-plan it)."""
    discarded = sum(1 for r in result.recorded.values() if r.discarded)
    line = (f"run {run} (seed {seed}): {result.planned} planned, {len(result.recorded)} recorded, "
            f"{result.retried} retried, {len(result.failed)} failed; {result.steps} steps on {result.nodes} node(s)")
    return line + (f"; {discarded} discarded (kept in the spool, never uploaded)" if discarded else "")
