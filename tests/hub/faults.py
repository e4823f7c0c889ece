"""Fault injection for the test Hub: random faults from a `FaultPlan`, or queued ones per endpoint.

Every request passes through `FaultInjector.draw` exactly once, before it is handled, which is also
why requests are counted there: `stats` then includes the requests that were faulted.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass

from .wire import Response, json_response

FAULT_KINDS = ("500", "502", "503", "504", "429", "409", "403", "drop", "drop_after", "hang")
HANG_S = 60.0  # "hang": no answer for this long (or until the server stops), then the connection closes
WRITE_ENDPOINTS = frozenset({"create_repo", "delete_repo", "preupload", "lfs_batch", "lfs_upload", "lfs_verify", "commit"})


@dataclass(frozen=True)
class FaultPlan:
    """Random faults: each matching request fails with probability `rate`, kind drawn from `kinds`.

    "drop" closes the connection before handling; "drop_after" handles the request (a commit lands)
    and then closes the connection instead of answering, like a response lost in transit; "hang"
    never answers (until `HANG_S` or the server stops), like a Hub that accepted the connection and stalled.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("500", "503", "429", "drop")
    only_writes: bool = True
    endpoints: frozenset[str] | None = None
    seed: int = 0
    retry_after: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}, got {self.kinds}")

    def applies_to(self, endpoint: str) -> bool:
        if self.endpoints is not None:
            return endpoint in self.endpoints
        return endpoint in WRITE_ENDPOINTS if self.only_writes else True


class FaultInjector:
    """Decides, per request, whether and how it fails; thread-safe, one per `HubServer`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._plan: FaultPlan | None = None
        self._rng = random.Random(0)
        self._queued: dict[str, deque[str]] = {}
        self._log: list[tuple[float, str, str | None]] = []  # (server monotonic time, endpoint, fault)
        self._released = threading.Event()
        self._down_after: tuple[str, int] | None = None  # (endpoint, its requests still answered), then all drop

    @property
    def plan(self) -> FaultPlan | None:
        return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed if plan else 0)

    def fail_next(self, endpoint: str, count: int = 1, kind: str = "503") -> None:
        """Make the next `count` requests to `endpoint` fail with `kind` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._queued.setdefault(endpoint, deque()).extend([kind] * count)

    def go_down_after(self, endpoint: str, count: int) -> None:
        """Answer `count` more requests to `endpoint` (others as usual), then drop every request until `come_back`.

        Like a Hub killed right after a given request, but the server keeps counting what is sent to it.
        """
        with self._lock:
            self._down_after = (endpoint, count)

    def come_back(self) -> None:
        with self._lock:
            self._down_after = None

    def _down(self, endpoint: str) -> bool:
        if self._down_after is None:
            return False
        watched, left = self._down_after
        if left <= 0:
            return True
        if endpoint == watched:
            self._down_after = (watched, left - 1)
        return False

    def draw(self, endpoint: str) -> str | None:
        """Count a request to `endpoint` and return the fault it gets: down, else a queued one, else the plan's."""
        with self._lock:
            self._stats[endpoint] += 1
            queue = self._queued.get(endpoint)
            kind = "drop" if self._down(endpoint) else queue.popleft() if queue else None
            plan = self._plan
            if kind is None and plan is not None and plan.applies_to(endpoint) and self._rng.random() < plan.rate:
                kind = self._rng.choice(plan.kinds)
            if kind is not None:
                self._injected[f"{endpoint}:{kind}"] += 1
            self._log.append((time.monotonic(), endpoint, kind))
            return kind

    def hang(self) -> None:
        """Stall a "hang" request's handler until `HANG_S` passed or `release` (server stop)."""
        self._released.wait(HANG_S)

    def release(self) -> None:
        self._released.set()

    @property
    def log(self) -> list[tuple[float, str, str | None]]:
        """Every request as the server saw it arrive: (time.monotonic(), endpoint, injected fault or None)."""
        with self._lock:
            return list(self._log)

    @property
    def retry_after(self) -> int:
        return self._plan.retry_after if self._plan else 0

    @property
    def stats(self) -> Counter[str]:
        with self._lock:
            return Counter(self._stats)

    @property
    def injected(self) -> Counter[str]:
        with self._lock:
            return Counter(self._injected)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self._injected.clear()
            self._log.clear()


def fault_response(kind: str, retry_after: int) -> Response:
    """The answer of an injected HTTP fault (not "drop"/"drop_after", which never answer)."""
    headers = {"X-Error-Message": f"injected fault {kind}"}
    if kind == "429":
        headers["Retry-After"] = str(retry_after)
    message = "Another operation is in progress on this repo (injected)" if kind == "409" else f"injected {kind}"
    return json_response({"error": message}, int(kind), headers)
