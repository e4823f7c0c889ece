"""``gymrec-play``: the recorder's command line, the only place that reads the environment."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click

from gymrec.recorder.config import HUMAN, PlayConfig, parse_env_kwargs
from gymrec.recorder.recovery import recover_orphans
from gymrec.shared.backends import list_envs, make_env
from gymrec.shared.cli_errors import OneLineCommand, cli_edge, configure_logging
from gymrec.shared.errors import BadAgentError
from gymrec.shared.paths import default_spool
from gymrec.shared.progress import counted, progress_for
from gymrec.shared.spool import check_spool

PROG = "gymrec-play"


def _list(filter_text: str) -> None:
    entries = list_envs(filter_text)
    width = max((len(e.env_id) for e in entries), default=10)
    for e in entries:
        status = "ready" if e.available else f"missing ROM/WAD: {e.note}"
        click.echo(f"{e.env_id:<{width}}  {e.backend:<8}  {status}")
    click.echo(f"{len(entries)} environment(s)", err=True)


def _interactive(config: PlayConfig, made: Any) -> tuple[Any, Any, dict[str, Any] | None]:
    """The window, and for humans the keymap resolver; imported lazily so headless runs skip pygame."""
    if config.headless:
        return None, None, None
    from gymrec.recorder.window import GameWindow
    from gymrec.shared.keymap import build_resolver, load_keymap

    resolver = None
    keymap_dict = None
    help_lines: list[str] = []
    if config.human:
        keymap = load_keymap(made.backend, config.keymap_path)
        resolver = build_resolver(keymap, made.env)
        keymap_dict = {"source": keymap.source, "bindings": keymap.to_dict(), "resolved": resolver.describe()}
        help_lines = resolver.help_lines()
    fps = config.fps or made.native_fps
    window = GameWindow(title=f"gymrec - {made.env_id}", fps=fps, scale=config.scale, help_lines=help_lines)
    return window, resolver, keymap_dict


def _recover(config: PlayConfig) -> Path:
    spool = check_spool(config.spool, create=True)
    for r in recover_orphans(spool):
        if r.sealed is not None:
            click.echo(f"recovered {r.sealed.name}: {r.checked_steps} steps checked, {r.rebuilt_steps} rebuilt", err=True)
        else:
            click.echo(f"could not recover {r.partial.name}: {r.error}", err=True)
    return spool


def _play_workers(config: PlayConfig, workers: int) -> None:
    from gymrec.recorder.workers import plan, run_workers

    spool = _recover(config)
    configs = plan(config, workers)
    progress = progress_for(sys.stderr, config.episodes, PROG)
    try:
        result = run_workers(configs, progress)
    finally:
        progress.close()
    if result.interrupted:
        _recover(config)  # a worker that could not stop at a step left its episode: finish it now
    if result.failed:
        code, stderr = result.failed[0]
        click.echo(stderr.rstrip("\n"), err=True)  # the worker's own one-line error
        raise SystemExit(code)
    for path in result.sealed:
        click.echo(str(path))
    click.echo(f"{len(result.sealed)} episode(s), {result.steps} steps recorded in {spool} by {len(configs)} workers", err=True)


def _play(config: PlayConfig) -> None:
    from gymrec.recorder.session import Session

    spool = _recover(config)
    made = make_env(config.env_id, dict(config.env_kwargs))
    window = None
    stack = contextlib.ExitStack()
    try:
        window, resolver, keymap_dict = _interactive(config, made)
        if window is not None:
            obs_shape = made.env.observation_space
            window.open(_frame_shape(obs_shape))
        session = Session(config, made, window=window, resolver=resolver, keymap=keymap_dict)
        if session.agent is not None:
            session.progress = progress = progress_for(sys.stderr, config.episodes, PROG)
            session.agent = counted(session.agent, progress)
            stack.callback(progress.close)
        result = session.run()
    finally:
        stack.close()
        if window is not None:
            window.close()
        made.env.close()
    for path in result.sealed:
        click.echo(str(path))
    click.echo(f"{len(result.sealed)} episode(s), {result.steps} steps recorded in {spool}", err=True)


def _frame_shape(space: Any) -> tuple[int, ...]:
    from gymrec.shared.spaces import describe_space, image_key

    desc = describe_space(space)
    key = image_key(desc)
    leaf = desc["spaces"][key] if desc["type"] == "Dict" else desc
    return tuple(leaf["shape"])


@click.command("gymrec-play", cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("env_id", required=False)
@click.option("--list", "list_envs_flag", is_flag=True, help="List environments (ENV_ID then filters) and exit.")
@click.option("--fps", type=float, help="Steps per second (default: the console's true speed).")
@click.option("--scale", type=click.IntRange(1, 8), default=3, show_default=True, help="Window scale.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Seed of the first episode.")
@click.option("--episodes", type=click.IntRange(1), help="Stop after N episodes (default: until Esc; 1 for agents).")
@click.option("--max-steps", type=click.IntRange(1), help="End (truncate) an episode after N steps.")
@click.option("--spool", type=click.Path(path_type=Path), help="Spool directory (default: $GYMREC_SPOOL or ~/.local/share/gymrec/spool).")
@click.option("--agent", default=HUMAN, show_default=True, help="human, random or MODULE:CALLABLE.")
@click.option("--headless", is_flag=True, help="No window and no pacing (agents only).")
@click.option("--env-kwarg", "env_kwargs", multiple=True, metavar="KEY=VALUE", help="Extra gymnasium.make kwarg.")
@click.option("--keymap", "keymap_path", type=click.Path(path_type=Path), help="A keymap TOML file.")
@click.option("--player", default="", help="Player name stored with each episode.")
@click.option("--workers", type=click.IntRange(1, 64), help="Record with N processes (agents only), each its own env and seed.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress.")
@cli_edge(PROG)
def main(env_id: str | None, list_envs_flag: bool, fps: float | None, scale: int, seed: int | None,
         episodes: int | None, max_steps: int | None, spool: Path | None, agent: str, headless: bool,
         env_kwargs: tuple[str, ...], keymap_path: Path | None, player: str, workers: int | None,
         verbose: bool) -> None:
    """Play ENV_ID and record every episode into the spool."""
    configure_logging(verbose)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # keep stderr for gymrec's own lines
    if list_envs_flag:
        _list(env_id or "")
        return
    if not env_id:
        raise click.UsageError("give an ENV_ID; gymrec-play --list shows them")
    if headless and agent == HUMAN:
        raise BadAgentError("--headless needs an agent: a human cannot play without a window", "add --agent random")
    if workers is not None and agent == HUMAN:
        raise BadAgentError("--workers records with agents: a human plays one game at a time", "add --agent random, or drop --workers")
    if keymap_path is not None and not keymap_path.is_file():
        from gymrec.shared.errors import KeymapError

        raise KeymapError(f"keymap file {keymap_path} does not exist", "pass an existing TOML file to --keymap")
    if fps is not None and fps <= 0:
        raise click.BadParameter("must be positive", param_hint="--fps")
    config = PlayConfig(
        env_id=env_id,
        spool=spool or default_spool(os.environ),
        env_kwargs=parse_env_kwargs(env_kwargs),
        fps=fps,
        scale=scale,
        seed=seed,
        episodes=episodes if episodes is not None else (None if agent == HUMAN else 1),
        max_steps=max_steps,
        agent=agent,
        headless=headless,
        keymap_path=keymap_path,
        player=player or os.environ.get("USER", ""),
    )
    # SIGTERM stops like Esc: the episode is sealed, not left for recovery.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if workers is not None and workers > 1:
        _play_workers(config, workers)
    else:
        _play(config)


if __name__ == "__main__":
    sys.exit(main())
