"""The recording session: episodes of play, each written to its own spool entry.

The frame loop stays thin: ask the action source (a person at the window, or an agent) for an
action, check it against the action space, journal it, step the env, hand the outcome to the writer.
Everything slow (compression, disk) happens on the writer process. A player who rewinds (hold R) and
plays on ends the episode as ``branched``; the next episode is its branch: the same seed, the
parent's first actions re-simulated and recorded as ``copied``, then new play.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import psutil

from gymrec.recorder.agents import load_agent
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import ActionSource, AgentController, StepView
from gymrec.recorder.interrupts import Interrupts
from gymrec.recorder.rewind import Rewinder
from gymrec.shared.envs.backends import MadeEnv, action_meanings
from gymrec.shared.errors import AgentActionError, AgentFailedError, BadAgentError
from gymrec.shared.spool import schema
from gymrec.shared.spool.attrs import EpisodeAttrs, utc_now
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.spool.sinks import Sink
from gymrec.shared.spool.spaces import (
    action_checker,
    check_recordable,
    describe_space,
    encode_action,
    image_key,
    split_observation,
)
from gymrec.shared.spool.writer import EpisodeWriter

log = logging.getLogger(__name__)
ACTOR_CODES = MappingProxyType({name: code for code, name in enumerate(schema.ACTORS)})
SEED_SPACE = 2**31 - 1
MAX_SEALING = 2


@dataclass(frozen=True)
class Branch:
    """Where the next episode branches off: the parent, its seed, and the actions it keeps."""

    parent: str
    seed: int
    actions: tuple[Any, ...]
    start_state: dict[str, Any] | None = None  # the parent's (shared.envs.ale_start): the branch starts as it did


@dataclass
class SessionResult:
    sealed: list[Path] = field(default_factory=list)  # every episode sealed, the discarded ones too
    discarded: list[Path] = field(default_factory=list)  # sealed as discarded: never uploaded, never counted
    steps: int = 0  # the kept episodes' steps

    @property
    def kept(self) -> list[Path]:
        return [p for p in self.sealed if p not in self.discarded]


def episode_attrs(config: PlayConfig, made: MadeEnv, seed: int, fps: float, keymap: dict[str, Any] | None,
                  spaces: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    env = made.env
    # Describing a Box observation scans its bounds (100k values for Atari): do it once per session.
    action_desc, obs_desc = spaces or (describe_space(env.action_space), describe_space(env.observation_space))
    planned = config.planned
    return {
        "schema_version": schema.SCHEMA_VERSION,
        # A planned episode keeps the id its plan gave it: a re-recording after a fault is the same episode.
        "episode_id": planned.episode_id if planned is not None else str(uuid.uuid4()),
        "env_id": made.env_id,
        "env_kwargs": made.kwargs,
        "env_spec_kwargs": made.spec_kwargs,
        "backend": made.backend,
        "seed": int(seed),
        "action_space": action_desc,
        "observation_space": obs_desc,
        "image_key": image_key(obs_desc),
        "fps": float(fps),
        "native_fps": float(made.native_fps),
        "frameskip": float(made.frameskip),
        "versions": made.versions,
        "collector": config.agent,
        "player": config.player,
        "keymap": keymap,
        # Headless: nobody sees a frame and every step is the agent's, so no per-step timing or actor
        # arrays (their zarr metadata and chunks cost ~2.8 B/frame of spool, P3).
        "step_times": [] if config.headless else list(schema.STEP_TIMES),
        # The machine's name identifies the player's machine: published only when asked (--publish-host).
        **({"host": socket.gethostname()} if config.publish_host else {}),
        "started_at": utc_now(),
        "chunk_steps": schema.CHUNK_STEPS,
        "info_skipped": list(made.history_info),
        "action_meanings": action_meanings(made),
        # Action t answers observation t (recorder.window.next_tick draws it, then gathers its input).
        "pairing": schema.PAIRING_ON_SCREEN,
        # From the start, not only at sealing: crash recovery seals what the partial holds.
        **({"takeover": True} if config.takeover else {}),
        **({"run": planned.run, "plan_index": planned.index} if planned is not None else {}),
        **config.start_attrs,
    }


def _children_except(sink: Sink) -> list[tuple[int, float]]:
    writer_pid = sink.child_pid
    return [(c.pid, c.create_time()) for c in psutil.Process().children(recursive=True) if c.pid != writer_pid]


class Session:
    """Runs episodes until the episode budget is spent or the player quits."""

    def __init__(self, config: PlayConfig, made: MadeEnv, source: ActionSource | None = None,
                 interrupts: Interrupts | None = None) -> None:
        self.config = config
        self.made = made
        # Without a source, the config's agent plays headless (benchmarks, tests, scripts).
        self.source: ActionSource = source if source is not None else agent_source(config, made)
        self.fps = config.fps or made.native_fps
        self._seeds = np.random.default_rng(config.seed)
        self._spaces = (describe_space(made.env.action_space), describe_space(made.env.observation_space))
        check_recordable(made.env_id, made.kwargs, self._spaces[1])  # before anything is recorded
        self._guarded = False
        self._actor = "human" if config.human else "agent"
        # Rewind is for people (--takeover included: the person rewinds while in control); snapshots
        # cost memory (~47 MB an hour) no agent run needs.
        img_key = image_key(self._spaces[1])
        self._rewinder = (Rewinder(made.env, lambda obs: split_observation(obs)[img_key])
                          if config.human or config.takeover else None)
        self._branch: Branch | None = None
        self._action_problem = action_checker(made.env.action_space)
        # Ctrl-C and SIGTERM wait until a step is whole (recorder.interrupts); the CLI installs the handlers.
        self._interrupts = interrupts if interrupts is not None else Interrupts()
        # The env's observation after the episode's last kept step: what sealing stores as the final
        # observation, whatever ends the episode (an exception included), so that it replays identical.
        self._last_obs: Any = None

    def _next_seed(self, first: bool) -> int:
        if first and self.config.seed is not None:
            return self.config.seed
        return int(self._seeds.integers(0, SEED_SPACE))

    def run(self, sink: Sink | None = None) -> SessionResult:
        """Play the episodes; ``sink``: a writer process the caller started (and closes), else one of our own.

        One writer process for the whole session: chunks leave the game loop through shared memory.
        The CLI starts it before it makes the env, so the writer's start-up (python, numpy, zarr for
        the array metadata: ~0.4 s of CPU, measured) runs on the other core meanwhile instead of
        stalling the first episode once its eight chunk buffers are full.
        """
        if sink is not None:
            return self.play(sink).wait()
        with Sink(process=True, spill_dir=self.config.spill_dir) as own:
            return self.play(own).wait()

    def play(self, sink: Sink) -> Sealing:
        """Play the episodes into ``sink`` and return while the last ones may still be sealing.

        A Ray actor (recorder.cluster.actor) plays its next planned episode meanwhile: waiting here
        for each seal (the last chunk and three fsyncs, ~15 ms an episode, measured) cost its
        one-episode sessions 18 % of their steps/s against one long session.
        """
        sealing = Sealing()
        episode = 0
        started = 0
        played = False
        try:
            while self.config.episodes is None or episode < self.config.episodes:
                branch, self._branch = self._branch, None
                seed = branch.seed if branch is not None else self._next_seed(first=started == 0)
                started += 1
                end, writer, stop = self._episode(seed, episode, sink, branch)
                if writer is not None:  # None: the episode never began, and nothing was written
                    sealing.add(writer, end)
                # Sealing runs on each episode's writer thread while the next episode plays; bound it.
                sealing.bound(MAX_SEALING)
                if stop:
                    break
                if end not in (EndReason.DISCARDED, EndReason.BRANCHED):  # a branch goes on with the episode
                    episode += 1
            played = True
        finally:
            if not played:  # what raises goes up once every episode handed over is sealed
                sealing.wait()
        return sealing

    def _view(self, obs: Any, writer: EpisodeWriter | None, number: int, img_key: str) -> StepView:
        steps, episode_return = (0, 0.0) if writer is None else (writer.steps, writer.episode_return)
        return StepView(split_observation(obs)[img_key], steps, episode_return, number + 1, self.made.env_id, self.fps)

    def _episode(self, seed: int, number: int, sink: Sink,
                 branch: Branch | None = None) -> tuple[EndReason, EpisodeWriter | None, bool]:
        """Play one episode (a ``branch`` of the last one, after a rewind); (how it ended as sealed, its
        writer or None if it never began, whether the session stops after it)."""
        lineage = {} if branch is None else {"parent_episode_id": branch.parent, "branch_step": len(branch.actions)}
        # ALE resets without reloading the ROM and stores the start state instead (shared.envs.backends);
        # a branch starts exactly as its parent did.
        starter = self.made.starter
        started = starter.start(seed) if branch is None else starter.restart(seed, branch.start_state)
        obs, info = started.obs, started.info
        start = started.attrs if branch is None else {"start_state": branch.start_state} if branch.start_state else {}
        attrs = EpisodeAttrs.from_dict(episode_attrs(self.config, self.made, seed, self.fps, self.source.keymap,
                                                     self._spaces) | lineage | start, "the new episode", sealed=False)
        if not self._guarded:  # engines (VizDoom) exist once the env is first reset
            sink.guard(_children_except(sink))
            self._guarded = True
        if self._rewinder is not None:
            self._rewinder.begin(seed, obs, functools.partial(_restart, self.made, seed, attrs.start_state))
        # Nothing is written until the episode begins: a player who quits at the start screen, or an
        # agent run stopped between two episodes, leaves no empty episode behind (docs/endings.md).
        if branch is None and not self.source.begin(self._view(obs, None, number, attrs.image_key)):
            return EndReason.QUIT, None, True
        writer = EpisodeWriter.create(self.config.spool, attrs, sink, backpressure=not self.config.human)
        log.info("episode %s: %s seed %d", attrs.episode_id, self.made.env_id, seed)
        self._last_obs = obs
        extra: dict[str, Any] = {}
        end: EndReason | None = None
        stop = False
        # Leaving this block without sealing (the env or the disk failed) leaves the .partial
        # (journal + committed chunks) to crash recovery.
        with writer:
            try:
                if branch is not None:  # the parent's steps up to the branch point, re-simulated
                    obs, info = self._copy_prefix(branch.actions, obs, info, writer, attrs)
                    self.source.branch(self._view(obs, writer, number, attrs.image_key))
                end, extra = self._steps(obs, info, writer, number, attrs)
                if end in (EndReason.TERMINATED, EndReason.TRUNCATED):
                    choice = self.source.finish(self._view(self._last_obs, writer, number, attrs.image_key), end)
                    if choice.discard:
                        end, extra = EndReason.DISCARDED, {**extra, "discarded_after": str(end)}
                    stop = choice.quit
            except KeyboardInterrupt:  # Ctrl-C or SIGTERM: stop and keep what was played, as it ended
                end, stop = end or EndReason.QUIT, True
            except AgentActionError as e:
                # The env never saw the bad action: what was played so far is whole, so seal it.
                self._seal(writer, EndReason.QUIT, {"stopped_because": e.message})
                raise
            except AgentFailedError as e:
                self._seal(writer, EndReason.QUIT, {"stopped_because": e.message})
                raise AgentFailedError(f"{e.message} at step {writer.steps}",
                                       f"fix the agent; the {writer.steps} steps before it are sealed") from e
            ended = end or EndReason.QUIT  # always set here; "or" only tells the type checker
            sealed = self._seal(writer, ended, {**extra, **self.source.sealing_attrs()}, wait=False)
        return sealed, writer, stop or ended == EndReason.QUIT

    def _steps(self, obs: Any, info: dict[str, Any], writer: EpisodeWriter, number: int,
               attrs: EpisodeAttrs) -> tuple[EndReason, dict[str, Any]]:
        """The frame loop: (how the episode ended, seal extras); the final observation is ``_last_obs``."""
        env = self.made.env
        whole_step = self._interrupts
        action_desc, img_key = attrs.action_space, attrs.image_key
        max_steps = self.config.max_steps
        while True:
            leaves = split_observation(obs)
            view = StepView(leaves[img_key], writer.steps, writer.episode_return, number + 1, self.made.env_id,
                            self.fps)
            choice = self.source.act(obs, view)
            if choice.stop is not None:
                return choice.stop, {}
            if choice.rewind and self._rewinder is not None:
                rewinder = self._rewinder
                target = self.source.rewind(rewinder.frames_back(writer.steps), view,
                                            functools.partial(_at_step, view))
                if target is None:
                    return EndReason.QUIT, {}
                if target < writer.steps:
                    self._branch = Branch(attrs.episode_id, attrs.seed, tuple(rewinder.actions[:target]), attrs.start_state)
                    return EndReason.BRANCHED, {"branched_at": target}
                obs, info = rewinder.restore_to(target)  # released where it started: play on
                self._last_obs = obs
                continue
            if choice.rewind:
                continue
            action = choice.action
            self._check(action, writer.steps)
            actor = ACTOR_CODES[choice.actor or self._actor]
            encoded = encode_action(action_desc, action)
            with whole_step:  # journal, step, outcome and final observation: all of them or none
                writer.record(leaves, encoded, info, (choice.shown_ns, choice.decided_ns), actor)
                obs, reward, terminated, truncated, info = env.step(action)
                writer.outcome(float(reward), bool(terminated), bool(truncated), info)
                if self._rewinder is not None:
                    self._rewinder.stepped(action, obs)
                self._last_obs = obs
            if terminated:
                return EndReason.TERMINATED, {}
            if truncated:
                return EndReason.TRUNCATED, {}
            if max_steps is not None and writer.steps >= max_steps:
                return EndReason.TRUNCATED, {"truncated_by": "max_steps"}

    def _seal(self, writer: EpisodeWriter, end: EndReason, extra: dict[str, Any], wait: bool = True) -> EndReason:
        """Seal with the env's observation after the last kept step; returns the end reason sealed."""
        if writer.steps == 0:
            end, extra = EndReason.DISCARDED, {**extra, "discarded_because": "no steps were played"}
        writer.seal(split_observation(self._last_obs), end, extra, wait=wait)
        return end

    def _copy_prefix(self, actions: tuple[Any, ...], obs: Any, info: dict[str, Any], writer: EpisodeWriter,
                     attrs: EpisodeAttrs) -> tuple[Any, dict[str, Any]]:
        """Re-simulate a branch's inherited actions from reset(seed), recorded as ``copied``: the branch
        then replays bit-exactly on its own, like any episode."""
        copied = ACTOR_CODES["copied"]
        for action in actions:
            with self._interrupts:
                writer.record(split_observation(obs), encode_action(attrs.action_space, action), info, (0, 0), copied)
                obs, reward, terminated, truncated, info = self.made.env.step(action)
                writer.outcome(float(reward), bool(terminated), bool(truncated), info)
                if self._rewinder is not None:
                    self._rewinder.stepped(action, obs)
                self._last_obs = obs
        return obs, info

    def _check(self, action: Any, step: int) -> None:
        """Refuse an action outside the action space before the journal (and so recovery) sees it."""
        problem = self._action_problem(action)
        if problem is not None:
            space = self.made.env.action_space
            who = "the keymap" if self.config.human else f"agent {self.source.collector}"
            detail = "" if problem.startswith("outside") else f" ({problem})"
            raise AgentActionError(
                f"{who} chose {_short(action)} at step {step}, which does not fit the action space {space}{detail}",
                f"return an action from env.action_space; the {step} steps before it are sealed",
            )


class Sealing:
    """A session's episodes that are handed to the writer: kept or discarded once each is sealed."""

    def __init__(self) -> None:
        self.result = SessionResult()
        self._pending: list[tuple[EpisodeWriter, EndReason]] = []

    def add(self, writer: EpisodeWriter, end: EndReason) -> None:
        self._pending.append((writer, end))
        self.result.steps += writer.steps if end != EndReason.DISCARDED else 0

    def bound(self, most: int) -> None:
        while len(self._pending) > most:
            self._collect(*self._pending.pop(0))

    def wait(self) -> SessionResult:
        """Until every episode is sealed (raises what sealing hit)."""
        self.bound(0)
        return self.result

    def _collect(self, writer: EpisodeWriter, end: EndReason) -> None:
        """Wait for an episode's sealing and file it as kept or discarded."""
        path = writer.wait()
        self.result.sealed.append(path)
        if end == EndReason.DISCARDED:
            self.result.discarded.append(path)


def _restart(made: MadeEnv, seed: int, start_state: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The env back at the start of an episode that began from ``seed`` and ``start_state``."""
    started = made.starter.restart(seed, start_state)
    return started.obs, started.info


def _at_step(view: StepView, step: int) -> StepView:
    return dataclasses.replace(view, step=step)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def agent_source(config: PlayConfig, made: MadeEnv) -> AgentController:
    """The config's agent (``random`` or ``MODULE:CALLABLE``), playing without a window."""
    if config.human:
        raise BadAgentError("a human plays through a window", "pass a HumanController as the session's source")
    return AgentController(load_agent(config.agent, made.env.action_space, config.seed), config.agent)
