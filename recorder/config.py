"""The recorder's configuration, built once at the CLI edge and passed down frozen."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymrec.shared.errors import BadEnvKwargError

HUMAN = "human"


@dataclass(frozen=True)
class Planned:
    """One episode of a planned run (``recorder.cluster.plan``): recorded under this id, never a fresh one."""

    run: str
    index: int
    episode_id: str


@dataclass(frozen=True)
class PlayConfig:
    env_id: str
    spool: Path
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    fps: float | None = None
    scale: int = 3
    seed: int | None = None
    episodes: int | None = None
    max_steps: int | None = None
    agent: str = HUMAN
    headless: bool = False
    keymap_path: Path | None = None
    player: str = ""
    step_mode: bool = False  # the env advances only when the player acts
    publish_host: bool = False  # store the machine's hostname with each episode
    takeover: bool = False  # the agent plays in the window; T hands control to the human and back
    # Attributes every episode starts with (gymrec-serve: the study, the pseudonymous participant, the client).
    start_attrs: Mapping[str, Any] = field(default_factory=dict)
    spill_dir: Path | None = None  # chunk buffers when /dev/shm is too small (the CLI: the temp dir); None: /dev/shm only
    planned: Planned | None = None  # one episode of a planned run (--ray): its id, run and index

    @property
    def human(self) -> bool:
        return self.agent == HUMAN


def _no_constant(name: str) -> Any:
    # json.loads reads NaN/Infinity by default; they would end up in the published metadata.
    raise ValueError(f"{name} is not a finite number")


def parse_env_kwargs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; VALUE is read as JSON (numbers, true/false, lists) or else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise BadEnvKwargError(
                f"--env-kwarg {pair!r} is not KEY=VALUE", "write it like --env-kwarg frameskip=4"
            )
        try:
            out[key] = json.loads(raw, parse_constant=_no_constant)
        except json.JSONDecodeError:
            out[key] = raw
        except ValueError as e:
            raise BadEnvKwargError(f"--env-kwarg {pair!r}: {e}", "give a finite number") from e
    return out
