"""The driver of ``gymrec-play --ray``: hands planned episodes to actors, re-plans those a fault took.

Each node that records carries a custom resource ``gymrec_node_<name>: <actors>`` (``ray start
--resources``): it marks the node as one of gymrec's and says how many actors it takes. The driver
starts up to ``--workers`` actors spread over those nodes, each holding two episodes (one playing,
one sealing: ``actor.IN_FLIGHT``). An actor that dies (killed, or its node lost) raises
``RayActorError`` for the episodes it held: they go back to the front of the queue with the same
seeds and ids (``recorder.cluster.plan``), and the actor is replaced on its node if the node is
still alive. An episode is given ``max_attempts`` tries; an
error the recording raises itself (a bad agent, a missing ROM) is the same on every node and ends the
run at once. Nothing is counted twice: an episode is recorded when an actor reports it sealed.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gymrec.recorder.cluster.actor import IN_FLIGHT, Recorded, RecordingActor
from gymrec.recorder.cluster.plan import PlannedEpisode
from gymrec.recorder.config import PlayConfig
from gymrec.shared.cli.progress import Progress
from gymrec.shared.errors import ClusterError, GymrecError

log = logging.getLogger(__name__)
NODE_RESOURCE_PREFIX = "gymrec_node_"
INSTALL_HINT = "pip install 'gymrec[ray]'"
CLOSE_TIMEOUT = 20.0  # seconds for the actors' writer processes to finish at the end of a run
REPLACE_AFTER = 1.0  # seconds before the first lost actor of a node is replaced there
START_FAILURES = 4  # actors dying before they are up, before the run gives up (a bad env fails everywhere)


@dataclass(frozen=True)
class RunSettings:
    workers: int | None = None  # actors in all; None: every slot the gymrec nodes offer
    max_attempts: int = 3  # tries per planned episode before it counts as failed
    no_actor_timeout: float = 120.0  # seconds with work left but no actor able to take it


@dataclass
class RunResult:
    planned: int
    recorded: dict[int, Recorded] = field(default_factory=dict)
    retried: int = 0  # attempts lost to a dead actor or node, and made again
    failed: list[int] = field(default_factory=list)  # planned indices never recorded
    replanned_at: list[float] = field(default_factory=list)  # time.time() of each re-plan (bench P12 fault row)
    nodes: int = 0

    @property
    def steps(self) -> int:
        return sum(r.steps for r in self.recorded.values() if not r.discarded)


def load_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ClusterError("--ray needs Ray, which is not installed", INSTALL_HINT) from e
    return ray


@dataclass(frozen=True)
class Node:
    node_id: str
    resource: str
    slots: int


def gymrec_nodes(nodes: Iterable[dict[str, Any]]) -> list[Node]:
    """The alive nodes carrying a ``gymrec_node_*`` resource, in resource-name order."""
    out = []
    for node in nodes:
        if not node.get("Alive"):
            continue
        for name, amount in node.get("Resources", {}).items():
            if name.startswith(NODE_RESOURCE_PREFIX) and amount >= 1:
                out.append(Node(str(node["NodeID"]), name, int(amount)))
    return sorted(out, key=lambda n: n.resource)


def spread(nodes: list[Node], workers: int | None) -> list[Node]:
    """One entry per actor: round-robin over the nodes, never more than a node's slots."""
    total = sum(n.slots for n in nodes) if workers is None else workers
    left = {n.resource: n.slots for n in nodes}
    out: list[Node] = []
    while len(out) < total and any(left.values()):
        for node in nodes:
            if len(out) < total and left[node.resource] > 0:
                out.append(node)
                left[node.resource] -= 1
    return out


@dataclass
class _Actor:
    handle: Any
    node: Node
    ready: Any  # the ``ready()`` call's ref until it answers, then None
    tasks: dict[Any, PlannedEpisode] = field(default_factory=dict)  # record() refs in flight, and their episodes


class Driver:
    def __init__(self, ray: Any, config: PlayConfig, settings: RunSettings, progress: Progress,
                 on_recorded: Callable[[Recorded], None] | None = None) -> None:
        self.ray = ray
        self.config = config
        self.settings = settings
        self.progress = progress
        self._on_recorded = on_recorded or (lambda r: None)
        # num_cpus=0: the node's gymrec resource counts the actors; Ray's CPU count stays for others.
        # max_concurrency: an actor plays one episode while the one before it seals (actor.IN_FLIGHT).
        self._remote = ray.remote(num_cpus=0, max_restarts=0, max_concurrency=IN_FLIGHT)(RecordingActor)
        self._start_failures = 0
        # Replacements wait a moment: an actor lost with its node is often reported before Ray declares
        # the node dead, and a replacement started there at once would die too.
        self._deferred: list[tuple[float, Node]] = []
        self._lost_on: collections.Counter[str] = collections.Counter()

    def _start(self, node: Node) -> _Actor:
        handle = self._remote.options(resources={node.resource: 1}).remote(self.config)
        return _Actor(handle, node, handle.ready.remote())

    def run(self, plan: list[PlannedEpisode]) -> RunResult:
        ray = self.ray
        nodes = gymrec_nodes(ray.nodes())
        if not nodes:
            raise ClusterError("the Ray cluster has no node to record on",
                               "start each node with ray start --resources '{\"gymrec_node_<name>\": <actors>}'")
        result = RunResult(planned=len(plan), nodes=len(nodes))
        pending = collections.deque(plan)
        attempts: collections.Counter[int] = collections.Counter()
        actors = [self._start(node) for node in spread(nodes, self.settings.workers)]
        usable_at = time.monotonic()  # the last time an actor was up
        try:
            while pending or any(a.tasks for a in actors):
                self._assign(actors, pending)
                if any(a.ready is None for a in actors):
                    usable_at = time.monotonic()
                elif time.monotonic() - usable_at > self.settings.no_actor_timeout:
                    break  # work left, and for that long no actor could take it: the rest failed
                actors.extend(self._due_replacements(not actors))
                waiting = [(a, ref) for a in actors for ref in ([a.ready] if a.ready is not None else list(a.tasks))]
                if not waiting:
                    time.sleep(0.2)
                    continue
                refs = [ref for _, ref in waiting]
                done, _ = ray.wait(refs, num_returns=1, timeout=1.0)
                for ref in done:
                    actor = waiting[refs.index(ref)][0]
                    if self._collect(actor, ref, result, attempts, pending):
                        actors.remove(actor)
                        self._defer(actor.node)
        finally:
            self._stop(actors)
        result.failed = sorted(set(result.failed) | {p.index for p in pending})
        return result

    def _stop(self, actors: list[_Actor]) -> None:
        """Close every started actor (its writer process finishes and /dev/shm is freed), then kill them all."""
        closing = [a.handle.close.remote() for a in actors if a.ready is None and not a.tasks]
        if closing:
            self.ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT)
        for actor in actors:
            self.ray.kill(actor.handle, no_restart=True)

    def _assign(self, actors: list[_Actor], pending: collections.deque[PlannedEpisode]) -> None:
        for actor in actors:
            while actor.ready is None and len(actor.tasks) < IN_FLIGHT and pending:
                episode = pending.popleft()
                actor.tasks[actor.handle.record.remote(episode)] = episode

    def _collect(self, actor: _Actor, ref: Any, result: RunResult, attempts: collections.Counter[int],
                 pending: collections.deque[PlannedEpisode]) -> bool:
        """Take one answer; True if the actor is lost (its episode, if any, is re-planned)."""
        ray = self.ray
        try:
            answer = ray.get(ref)
        except ray.exceptions.RayActorError as e:
            alive = {n.node_id for n in gymrec_nodes(ray.nodes())}
            if actor.ready is not None and actor.node.node_id in alive:
                # It never started on a node that is up: a failing env or agent fails on every node.
                self._start_failures += 1
                if self._start_failures > START_FAILURES:
                    raise _start_error(e) from e
            # Said once in the summary (retried); the details for -v.
            log.info("an actor on %s was lost (%s)", actor.node.resource, type(e).__name__)
            held = sorted(actor.tasks.values(), key=lambda p: p.index)
            actor.tasks.clear()
            for episode in reversed(held):  # first in line, in plan order: same seed, same id, another actor
                attempts[episode.index] += 1
                if attempts[episode.index] >= self.settings.max_attempts:
                    result.failed.append(episode.index)
                else:
                    result.retried += 1
                    result.replanned_at.append(time.time())
                    pending.appendleft(episode)
            return True
        except ray.exceptions.RayTaskError as e:
            cause = getattr(e, "cause", None)
            if isinstance(cause, GymrecError):  # the same on every node: stop the run
                raise cause from None
            raise
        if actor.ready is not None and ref == actor.ready:
            actor.ready = None
            return False
        recorded: Recorded = answer
        del actor.tasks[ref]
        result.recorded[recorded.index] = recorded
        self.progress.steps(0 if recorded.discarded else recorded.steps)
        self.progress.episode()
        self._on_recorded(recorded)
        return False

    def _defer(self, node: Node) -> None:
        """Replace a lost actor later, the longer the more were lost on that node (1, 2, 4 ... 32 s): a
        node Ray has not yet declared dead (its health check takes up to ~30 s by default) is not
        mistaken for an env that cannot start."""
        self._lost_on[node.node_id] += 1
        delay = REPLACE_AFTER * 2 ** min(self._lost_on[node.node_id] - 1, 5)
        self._deferred.append((time.monotonic() + delay, node))

    def _due_replacements(self, none_left: bool) -> list[_Actor]:
        """New actors for the lost ones whose wait is over, each on its own node if that is still alive;
        with no actor left at all, on any alive gymrec node instead."""
        now = time.monotonic()
        due = [node for when, node in self._deferred if when <= now]
        if not due:
            return []
        self._deferred = [(when, node) for when, node in self._deferred if when > now]
        alive = gymrec_nodes(self.ray.nodes())
        by_id = {n.node_id: n for n in alive}
        started = [self._start(by_id[node.node_id]) for node in due if node.node_id in by_id]
        if not started and none_left and alive:
            started = [self._start(alive[0])]
        return started


def _start_error(error: BaseException) -> GymrecError:
    """Why the actors cannot start, as the typed error the actor raised (Ray passes it on as text)."""
    from gymrec.shared import errors

    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    name, sep, message = last.partition(": ")
    kind = getattr(errors, name.rsplit(".", 1)[-1], None) if sep and name.startswith("gymrec.") else None
    if isinstance(kind, type) and issubclass(kind, GymrecError):
        return kind(f"the recording actors cannot start: {message}")
    return ClusterError(f"the recording actors cannot start: {last}",
                        "run the same gymrec-play command without --ray on a node to see why")
