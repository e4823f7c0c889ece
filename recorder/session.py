"""The recording session: episodes of play, each written to its own spool entry.

The frame loop stays thin: ask the window (or the agent) for an action, journal it, step the env,
hand the outcome to the writer. Everything slow (compression, disk) happens on the writer thread.
"""

from __future__ import annotations

import logging
import socket
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from gymrec.recorder.agents import Agent, load_agent
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.sinks import Sink
from gymrec.recorder.writer import EpisodeWriter, utc_now
from gymrec.shared import schema
from gymrec.shared.backends import MadeEnv
from gymrec.shared.errors import AgentActionError
from gymrec.shared.progress import NoProgress, Progress
from gymrec.shared.schema import EndReason
from gymrec.shared.spaces import describe_space, encode_action, image_key, split_observation

log = logging.getLogger(__name__)
SEED_SPACE = 2**31 - 1
MAX_SEALING = 2


@dataclass
class SessionResult:
    sealed: list[Path] = field(default_factory=list)
    steps: int = 0


def episode_attrs(config: PlayConfig, made: MadeEnv, seed: int, fps: float, keymap: dict[str, Any] | None,
                  spaces: tuple[dict[str, Any], dict[str, Any]] | None = None) -> dict[str, Any]:
    env = made.env
    # Describing a Box observation scans its bounds (100k values for Atari): do it once per session.
    action_desc, obs_desc = spaces or (describe_space(env.action_space), describe_space(env.observation_space))
    return {
        "schema_version": schema.SCHEMA_VERSION,
        "episode_id": str(uuid.uuid4()),
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
        "host": socket.gethostname(),
        "started_at": utc_now(),
        "chunk_steps": schema.CHUNK_STEPS,
        "info_skipped": list(made.history_info),
    }


def _children_except(sink: Sink) -> list[tuple[int, float]]:
    writer_pid = sink.child_pid
    return [(c.pid, c.create_time()) for c in psutil.Process().children(recursive=True) if c.pid != writer_pid]


class Session:
    """Runs episodes until the episode budget is spent or the player quits."""

    def __init__(self, config: PlayConfig, made: MadeEnv, window: Any = None, resolver: Any = None,
                 keymap: dict[str, Any] | None = None) -> None:
        self.config = config
        self.made = made
        self.window = window
        self.resolver = resolver
        self.keymap = keymap
        self.fps = config.fps or made.native_fps
        self._seeds = np.random.default_rng(config.seed)
        self._spaces = (describe_space(made.env.action_space), describe_space(made.env.observation_space))
        self._guarded = False
        self.progress: Progress = NoProgress()  # episodes done, for the CLI's progress bar
        self.agent: Agent | None = None
        if not config.human:
            self.agent = load_agent(config.agent, made.env.action_space, config.seed)

    def _next_seed(self, first: bool) -> int:
        if first and self.config.seed is not None:
            return self.config.seed
        return int(self._seeds.integers(0, SEED_SPACE))

    def run(self) -> SessionResult:
        # One writer process for the whole session: chunks leave the game loop through shared memory.
        sink = Sink(process=True)
        try:
            return self._run(sink)
        finally:
            sink.close()

    def _run(self, sink: Sink) -> SessionResult:
        result = SessionResult()
        sealing: list[EpisodeWriter] = []
        episode = 0
        started = 0
        try:
            while self.config.episodes is None or episode < self.config.episodes:
                seed = self._next_seed(first=started == 0)
                started += 1
                end, writer = self._episode(seed, episode, sink)
                sealing.append(writer)
                result.steps += writer.steps
                self.progress.episode()
                # Sealing runs on each episode's writer thread while the next episode plays; bound it.
                while len(sealing) > MAX_SEALING:
                    result.sealed.append(sealing.pop(0).wait())
                if end == EndReason.QUIT:
                    break
                if end != EndReason.DISCARDED:
                    episode += 1
        finally:
            for writer in sealing:
                result.sealed.append(writer.wait())
        return result

    def _episode(self, seed: int, number: int, sink: Sink) -> tuple[EndReason, EpisodeWriter]:
        env = self.made.env
        attrs = episode_attrs(self.config, self.made, seed, self.fps, self.keymap, self._spaces)
        action_desc = attrs["action_space"]
        img_key = attrs["image_key"]
        # ALE resets without reloading the ROM and stores the start state instead (shared.backends).
        started = self.made.starter.start(seed)
        obs, info = started.obs, started.info
        attrs.update(started.attrs)
        if not self._guarded:  # engines (VizDoom) exist once the env is first reset
            sink.guard(_children_except(sink))
            self._guarded = True
        writer = EpisodeWriter.create(self.config.spool, attrs, sink, backpressure=not self.config.human)
        log.info("episode %s: %s seed %d", attrs["episode_id"], self.made.env_id, seed)
        end: EndReason | None = None
        extra: dict[str, Any] = {}
        # Leaving this block without sealing (the env or the disk failed) leaves the .partial
        # (journal + committed chunks) to crash recovery.
        with writer:
            try:
                while end is None:
                    leaves = split_observation(obs)
                    keys: frozenset[str] = frozenset()
                    if self.window is not None:
                        tick = self.window.next_tick(leaves[img_key], self._hud(writer, number))
                        if tick.quit:
                            end = EndReason.QUIT
                            break
                        if tick.discard:
                            end = EndReason.DISCARDED
                            break
                        keys = tick.keys
                    action = self.agent(obs) if self.agent is not None else self.resolver(keys)
                    writer.record(leaves, encode_action(action_desc, action), info)
                    obs, reward, terminated, truncated, info = env.step(action)
                    writer.outcome(float(reward), bool(terminated), bool(truncated), info)
                    if terminated:
                        end = EndReason.TERMINATED
                    elif truncated:
                        end = EndReason.TRUNCATED
                    elif self.config.max_steps is not None and writer.steps >= self.config.max_steps:
                        end, extra = EndReason.TRUNCATED, {"truncated_by": "max_steps"}
            except KeyboardInterrupt:
                end = EndReason.QUIT  # Ctrl-C or SIGTERM: stop and keep what was played
            except AgentActionError:
                # The env never saw the bad action: what was played so far is whole, so seal it.
                self._seal(writer, obs, EndReason.QUIT, {"stopped_because": "the agent returned an invalid action"})
                raise
            self._seal(writer, obs, end, extra, wait=False)
        return end, writer

    @staticmethod
    def _seal(writer: EpisodeWriter, obs: Any, end: EndReason, extra: dict[str, Any], wait: bool = True) -> Path:
        if writer.steps == 0:
            end, extra = EndReason.DISCARDED, {**extra, "discarded_because": "no steps were played"}
        return writer.seal(split_observation(obs), end, extra, wait=wait)

    def _hud(self, writer: EpisodeWriter, number: int) -> Any:
        from gymrec.recorder.window import HudState

        return HudState(
            fps_target=self.fps,
            step=writer.steps,
            episode_return=writer.episode_return,
            episode=number + 1,
            recording=True,
            env_id=self.made.env_id,
        )
