"""Re-run a recorded episode and prove it bit-exact, or say where it first diverges.

The env is made from the recorded id, kwargs and backend (once per process for each: see
``EnvPool``), started as recorded (the stored start state for ALE, else the seed; see
``shared.envs.backends.EpisodeStarter``) and stepped with the recorded actions. Per step the hot loop costs one xxh3 of the observation and three
scalar comparisons against lists read in bulk up front; frames are decoded only on a mismatch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from gymrec.replay.diff import compare, is_image, write_png
from gymrec.shared.envs.backends import MadeEnv, backend_named, make_env_for
from gymrec.shared.errors import SpoolError
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.schema import row_hash
from gymrec.shared.spool.sources import EXIT_CORRUPT, EpisodeSource, RecordedSteps
from gymrec.shared.spool.spaces import OBS_LEAF, split_observation

log = logging.getLogger(__name__)
CHECKED_VERSIONS = ("gymnasium", "ale-py", "vizdoom", "stable-retro")


@dataclass(frozen=True)
class VerifyOptions:
    diff_dir: Path
    # also prove every stored frame matches its stored hash (decodes all); None: where frames decode
    # fast (a format-3 dataset), which is the default
    check_frames: bool | None = None


@dataclass(frozen=True)
class Divergence:
    step: int
    field: str  # "observation", "observation.<leaf>", "reward", "terminated", "truncated"
    detail: str
    differing: int | None = None
    max_abs: float | None = None
    diff_png: Path | None = None

    def line(self) -> str:
        return f"step {self.step} {self.field}: {self.detail}"


@dataclass(frozen=True)
class Result:
    episode_id: str
    env_id: str
    length: int
    status: str  # identical | diverged | error | corrupt | shown
    seconds: float
    divergence: Divergence | None = None
    warnings: tuple[str, ...] = ()
    error: str | None = None
    steps_run: int = 0


def version_warnings(attrs: EpisodeAttrs, installed: Mapping[str, str] | None = None) -> list[str]:
    """One line per env package whose installed version differs from the recorded one."""
    recorded = attrs.versions
    installed = backend_named(attrs.backend).versions() if installed is None else installed
    return [
        f"{name} {installed[name]} is installed but the episode was recorded with {recorded[name]}"
        for name in CHECKED_VERSIONS
        if name in recorded and name in installed and str(recorded[name]) != str(installed[name])
    ]


class EnvPool:
    """One env per (env id, kwargs, backend), reused across episodes (``--all``, any sources).

    Making an ALE env costs ~120 ms, a quarter of a short episode's replay. Starters make every
    episode start as recorded whatever the env ran before. stable-retro allows one emulator per
    process, so making a retro env first closes the other retro envs.
    """

    def __init__(self) -> None:
        self._made: dict[str, MadeEnv] = {}
        self._versions: dict[str, dict[str, str]] = {}

    def versions(self, backend: str) -> dict[str, str]:
        """The installed versions of ``backend``'s packages, looked up once: importlib.metadata
        parses every package's METADATA for each lookup, ~2.4 ms an episode for ALE's four."""
        found = self._versions.get(backend)
        if found is None:
            found = self._versions[backend] = backend_named(backend).versions()
        return found

    def get(self, attrs: EpisodeAttrs) -> MadeEnv:
        key = json.dumps([attrs.env_id, attrs.env_kwargs, attrs.backend], sort_keys=True)
        made = self._made.get(key)
        if made is None:
            if attrs.backend == "retro":
                for other in [k for k, m in self._made.items() if m.backend == "retro"]:
                    self._made.pop(other).env.close()
            made = self._made[key] = make_env_for(attrs)
        return made

    def close(self) -> None:
        while self._made:
            self._made.popitem()[1].env.close()

    def __enter__(self) -> EnvPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _field(leaf: str, single: bool) -> str:
    return "observation" if single else f"observation.{leaf}"


class Checker:
    """Compares one replayed step with the record; builds the report on the first mismatch."""

    def __init__(self, source: EpisodeSource, steps: RecordedSteps, options: VerifyOptions) -> None:
        self.source = source
        self.steps = steps
        self.options = options
        self.leaves = [leaf.name for leaf in source.obs_leaves]
        self.single = self.leaves == [OBS_LEAF]
        self.forced: int = -1  # a step whose stored frame is known bad: compare it in full

    def obs(self, t: int, obs: Any) -> Divergence | None:
        if self.single:
            if row_hash(obs) != self.steps.obs_hashes[OBS_LEAF][t] or t == self.forced:
                return self._obs_mismatch(t, {OBS_LEAF: np.asarray(obs)})
            return None
        leaves = split_observation(obs)
        for name in self.leaves:
            if row_hash(leaves[name]) != self.steps.obs_hashes[name][t] or t == self.forced:
                return self._obs_mismatch(t, leaves)
        return None

    def outcome(self, t: int, reward: Any, terminated: Any, truncated: Any) -> Divergence | None:
        steps = self.steps
        if float(reward) != steps.reward[t]:
            return Divergence(t, "reward", f"recorded {steps.reward[t]!r}, replayed {float(reward)!r}")
        if bool(terminated) != steps.terminated[t]:
            return Divergence(t, "terminated", f"recorded {steps.terminated[t]}, replayed {bool(terminated)}")
        if bool(truncated) != steps.truncated[t]:
            return Divergence(t, "truncated", f"recorded {steps.truncated[t]}, replayed {bool(truncated)}")
        return None

    def _obs_mismatch(self, t: int, replayed: dict[str, np.ndarray]) -> Divergence | None:
        """Decode the recorded observation and find the leaf that really differs."""
        recorded = self.source.observation(t)
        for name in self.leaves:
            diff = compare(recorded[name], replayed[name])
            stored_ok = row_hash(recorded[name]) == self.steps.obs_hashes[name][t]
            if diff.differing == 0 and stored_ok:
                continue
            if diff.differing == 0:
                # The replay reproduces the recorded frame exactly; only the stored hash is wrong.
                return Divergence(t, _field(name, self.single), "the recorded hash does not match the recorded frame (the record is damaged)", 0, 0.0)
            where = "the stored frame does not match its recorded hash; " if not stored_ok else ""
            if diff.shape_mismatch:
                detail = f"{where}shape recorded {recorded[name].shape}, replayed {replayed[name].shape}"
            else:
                unit = "pixels" if is_image(recorded[name]) else "values"
                detail = f"{where}{diff.differing} {unit} differ, max abs difference {diff.max_abs:g}"
            png = None
            if is_image(recorded[name]) and is_image(replayed[name]):
                try:
                    png = write_png(self.options.diff_dir, f"{self.source.id}-step{t}-{name}.png", recorded[name], replayed[name])
                except SpoolError as e:  # the picture is a help; the divergence is the finding
                    log.warning("%s (%s); the divergence is reported without it", e.message, e.hint)
            return Divergence(t, _field(name, self.single), detail, diff.differing, diff.max_abs, png)
        return None

    def first_bad_stored_frame(self) -> int:
        """The first step whose stored observation does not hash to its stored hash, or -1."""
        hashes = self.steps.obs_hashes
        for t, leaves in self.source.observations():
            for name in self.leaves:
                if row_hash(leaves[name]) != hashes[name][t]:
                    return t
        return -1


def run(source: EpisodeSource, steps: RecordedSteps, made: MadeEnv, checker: Checker,
        warn: Callable[[str], None] = log.warning) -> tuple[Divergence | None, int]:
    """The hot loop: (first divergence or None, steps stepped)."""
    started = made.starter.restart(source.attrs.seed, source.attrs.start_state)
    if started.note:
        warn(f"{source.id[:8]}: {started.note}")
    loop = _run_single if checker.single and checker.forced < 0 else _run_leaves
    divergence, ran = loop(source.length, started.obs, steps, made.env.step, checker)
    if divergence is not None and ran == source.length and divergence.step == source.length:
        divergence = Divergence(divergence.step, f"final {divergence.field}", *_rest(divergence))
    return divergence, ran


def _run_leaves(length: int, obs: Any, steps: RecordedSteps, step: Callable[[Any], Any],
                checker: Checker) -> tuple[Divergence | None, int]:
    actions = steps.actions
    check_obs, check_outcome = checker.obs, checker.outcome
    for t in range(length):
        divergence = check_obs(t, obs)
        if divergence is not None:
            return divergence, t
        obs, reward, terminated, truncated, _ = step(actions[t])
        divergence = check_outcome(t, reward, terminated, truncated)
        if divergence is not None:
            return divergence, t + 1
    return check_obs(length, obs), length


def _buffer_hash(obs: Any) -> int:
    """``row_hash`` for what is already a C-contiguous buffer (an env's fresh observation array),
    without its conversion (~0.4 us a step); anything else goes through ``row_hash``."""
    try:
        return xxhash.xxh3_64_intdigest(obs)
    except (BufferError, TypeError, ValueError):
        return row_hash(obs)


def _run_single(length: int, obs: Any, steps: RecordedSteps, step: Callable[[Any], Any],
                checker: Checker) -> tuple[Divergence | None, int]:
    """``_run_leaves`` for a one-leaf observation, its checks inlined (~1.5 us a step of method
    calls and conversions, ~1 % of a Breakout replay). Any inequality here goes to the Checker,
    which decides, so this loop can only defer a verdict, never pass a step the Checker would fail."""
    actions, hashes = steps.actions, steps.obs_hashes[OBS_LEAF]
    rewards, terminateds, truncateds = steps.reward, steps.terminated, steps.truncated
    for t in range(length):
        if _buffer_hash(obs) != hashes[t]:
            divergence = checker.obs(t, obs)
            if divergence is not None:
                return divergence, t
        obs, reward, terminated, truncated, _ = step(actions[t])
        if reward != rewards[t] or terminated != terminateds[t] or truncated != truncateds[t]:
            divergence = checker.outcome(t, reward, terminated, truncated)
            if divergence is not None:
                return divergence, t + 1
    return checker.obs(length, obs), length


def _rest(d: Divergence) -> tuple[str, int | None, float | None, Path | None]:
    return d.detail, d.differing, d.max_abs, d.diff_png


def verify(
    source: EpisodeSource,
    options: VerifyOptions,
    warn: Callable[[str], None] = log.warning,
    envs: EnvPool | None = None,
) -> Result:
    """Verify one episode end to end, in an env from ``envs`` (without one: a private env, closed after)."""
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        pool = envs if envs is not None else stack.enter_context(EnvPool())
        warnings = version_warnings(source.attrs, pool.versions(source.attrs.backend))
        for line in warnings:
            warn(f"{source.id[:8]}: {line}")
        steps = source.steps()
        checker = Checker(source, steps, options)
        if options.check_frames or (options.check_frames is None and source.cheap_frames):
            checker.forced = checker.first_bad_stored_frame()
        divergence, ran = run(source, steps, pool.get(source.attrs), checker, warn)
    return Result(
        episode_id=source.id,
        env_id=source.env_id,
        length=source.length,
        status="identical" if divergence is None else "diverged",
        seconds=time.perf_counter() - started,
        divergence=divergence,
        warnings=tuple(warnings),
        steps_run=ran,
    )


@dataclass
class Summary:
    results: list[Result] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """Corruption first (5: the stored data is damaged), then any other error (2), then divergence (1)."""
        if any(r.status == "corrupt" for r in self.results):
            return EXIT_CORRUPT
        if any(r.status == "error" for r in self.results):
            return 2
        return 1 if any(r.status == "diverged" for r in self.results) else 0
