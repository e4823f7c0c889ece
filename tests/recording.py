"""Record test episodes in-process through the product's own path (``Session`` and its writer process)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import ActionSource, AgentController, EndChoice, StepView
from gymrec.recorder.session import Session, agent_source, episode_attrs
from gymrec.shared.envs.backends import make_env
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.chunks import ArrayMeta
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.spool.spaces import encode_action, split_observation
from gymrec.shared.spool.writer import EpisodeWriter


def chunk_path(episode: Path, array: str, index: int) -> Path:
    """Where chunk ``index`` of ``array`` lies, in whichever chunk key layout the array uses."""
    return ArrayMeta.read(episode / array, episode.name, array).chunk_file(index)


def new_attrs(raw: dict[str, Any]) -> EpisodeAttrs:
    """The session's attribute dict for a new episode, validated as the session does."""
    return EpisodeAttrs.from_dict(raw, "the new episode", sealed=False)


class _Discarding:
    """The random agent, discarding its episode when it ends and stopping, as a player pressing Backspace, then Esc, would."""

    def __init__(self, inner: AgentController) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def finish(self, view: StepView, end: EndReason) -> EndChoice:
        return EndChoice(discard=True, quit=True)


def record_episode(spool: Path, env_id: str, steps: int, seed: int, env_kwargs: dict[str, Any] | None = None,
                   end_reason: str | None = None) -> Path:
    """One random-agent episode of at most ``steps`` steps through the product's own path: a
    ``Session`` with its writer process, the backend's episode starter (ALE start states) and action
    checks, exactly as ``gymrec-play --agent random --headless --seed SEED --max-steps STEPS --episodes 1``
    records it, minus the process start-up. ``end_reason="discarded"`` discards it at its end.

    An episode sealed with no steps is something the product never writes (it seals those as
    discarded), so ``steps=0`` goes through ``write_episode_directly``.
    """
    if steps == 0 or end_reason not in (None, EndReason.DISCARDED):
        return write_episode_directly(spool, env_id, steps, seed, env_kwargs, end_reason)
    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(env_id, env_kwargs or {})
    try:
        config = PlayConfig(env_id=env_id, spool=spool, env_kwargs=made.kwargs, seed=seed, episodes=1,
                            max_steps=steps, agent="random", headless=True, player="test")
        source: ActionSource = agent_source(config, made)
        if end_reason == EndReason.DISCARDED:
            source = _Discarding(agent_source(config, made))  # type: ignore[assignment]
        result = Session(config, made, source).run()
    finally:
        made.env.close()
    (sealed,) = result.sealed
    return sealed


def write_episode_directly(spool: Path, env_id: str, steps: int, seed: int, env_kwargs: dict[str, Any] | None = None,
                           end_reason: str | None = None) -> Path:
    """Write an episode with ``EpisodeWriter`` on the in-process writer thread, bypassing ``Session``:
    only for shapes the product never records (an episode sealed with no steps, an arbitrary end reason)."""
    spool.mkdir(parents=True, exist_ok=True)
    made = make_env(env_id, env_kwargs or {})
    env = made.env
    try:
        env.action_space.seed(seed)
        config = PlayConfig(env_id=env_id, spool=spool, env_kwargs=made.kwargs, seed=seed, agent="random",
                            headless=True, player="test")
        attrs = new_attrs(episode_attrs(config, made, seed, made.native_fps, None))
        writer = EpisodeWriter.create(spool, attrs, backpressure=True)
        obs, info = env.reset(seed=seed)
        reason = "truncated"
        for _ in range(steps):
            action = env.action_space.sample()
            writer.record(split_observation(obs), encode_action(attrs.action_space, action), info)
            obs, reward, terminated, truncated, info = env.step(action)
            writer.outcome(float(reward), bool(terminated), bool(truncated), info)
            if terminated or truncated:
                reason = "terminated" if terminated else "truncated"
                break
        return writer.seal(split_observation(obs), end_reason or reason)
    finally:
        env.close()


class RecordingCache:
    """Random-agent episodes recorded once per test session and copied into each spool that asks for
    one: the same bytes ``record_episode`` would write (episode id included), for tests that only need
    an episode to upload, not a new recording. A test gets its own copy, so it may move or damage it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.recorded: dict[tuple[str, int, int], Path] = {}

    def copy(self, spool: Path, env_id: str, steps: int, seed: int) -> Path:
        key = (env_id, steps, seed)
        if key not in self.recorded:
            self.recorded[key] = record_episode(self.root / f"{len(self.recorded)}", env_id, steps, seed)
        source = self.recorded[key]
        spool.mkdir(parents=True, exist_ok=True)
        # Copied beside the spool, then renamed in: a watching uploader sees it whole, as after sealing.
        staging = Path(shutil.copytree(source, spool.parent / f".copying-{source.name}"))
        return staging.rename(spool / source.name)
