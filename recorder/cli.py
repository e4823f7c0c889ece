"""``gymrec-play``: the recorder's command line, the only place that reads the environment."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import tempfile
from pathlib import Path

import click

from gymrec.recorder.config import HUMAN, PlayConfig, parse_env_kwargs
from gymrec.recorder.controllers import ActionSource
from gymrec.recorder.interrupts import Interrupts
from gymrec.recorder.play_source import action_source
from gymrec.shared.cli.edge import FiniteFloat, OneLineCommand, cli_edge, configure_logging
from gymrec.shared.cli.paths import default_spool
from gymrec.shared.cli.progress import progress_for
from gymrec.shared.envs.backends import list_envs, make_env
from gymrec.shared.errors import BadAgentError
from gymrec.shared.spool.directory import check_spool
from gymrec.shared.spool.recovery import format_report, recover_orphans

PROG = "gymrec-play"
# Below 0.5 steps/s nobody is playing; above 1000 no window keeps up (a 60 Hz screen shows 60).
MIN_FPS, MAX_FPS = 0.5, 1000.0
MAX_COUNT = 10**9  # episodes or steps: a billion Atari steps is 200 days at 60 Hz


def _list(filter_text: str, installed: bool) -> None:
    """One line per id with its status; the hint for ids that cannot be played yet, once, at the end."""
    from gymrec.shared.envs.backends import all_ids, suggestions
    from gymrec.shared.errors import UnknownEnvError

    entries = list_envs(filter_text)
    if not entries:
        close = suggestions(filter_text, list(all_ids()))
        hint = f"did you mean {', '.join(close)}?" if close else "run gymrec-play --list to see every id"
        raise UnknownEnvError(f"no env id matches {filter_text!r}", hint)
    shown = [e for e in entries if e.available] if installed else entries
    width = max((len(e.env_id) for e in shown), default=10)
    for e in shown:
        click.echo(f"{e.env_id:<{width}}  {e.backend:<8}  {'ready' if e.available else 'no ROM'}")
    missing = len(entries) - sum(e.available for e in entries)
    summary = f"{len(shown)} environment(s)"
    if installed and missing:
        summary += f" ready to play ({missing} more need a ROM: gymrec-play --list)"
    click.echo(summary, err=True)
    if missing and not installed:
        for note in dict.fromkeys(e.note for e in entries if not e.available and e.note):
            click.echo(f"no ROM: {note}", err=True)


def _recover(config: PlayConfig) -> Path:
    spool = check_spool(config.spool, create=True)
    click.echo(format_report(recover_orphans(spool)), err=True, nl=False)
    return spool


def _play_workers(config: PlayConfig, workers: int) -> None:
    """``--workers N`` (N > 1): agents only, headless, each worker its own process (``recorder.workers``)."""
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
    click.echo(summary(len(result.sealed), result.steps, len(result.discarded), spool, len(configs)), err=True)


def _play_ray(config: PlayConfig, address: str, workers: int | None, run: str | None, spool: Path | None) -> None:
    """``--ray [ADDRESS]``: a planned run recorded by Ray actors into each node's spool (recorder.cluster)."""
    from gymrec.recorder.cluster.connect import connect, run_summary
    from gymrec.recorder.cluster.driver import Driver, RunSettings, load_ray
    from gymrec.recorder.cluster.plan import default_run_name, plan_run, run_seed
    from gymrec.shared.errors import PlannedEpisodesFailedError

    # The driver's task events feed Ray's dashboard and state API, which a run does not use; with them
    # on, ray.shutdown() waits ~250 ms to flush them once an actor existed (0.27 s against 0.03 s,
    # measured): 7 % of a 40-episode P12 run. Read by Ray when it joins; a user's own setting wins.
    os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
    ray = load_ray()
    name = run or default_run_name(config.env_id)
    seed = run_seed(name, config.seed)
    plan = plan_run(seed, name, int(config.episodes or 1))
    progress = progress_for(sys.stderr, len(plan), PROG)
    # --spool names the path on every node; without it each node's GYMREC_SPOOL (or default) is its spool.
    with connect(ray, address, workers, spool):
        try:
            result = Driver(ray, config, RunSettings(workers=workers), progress).run(plan)
        finally:
            progress.close()
    for index in sorted(result.recorded):
        click.echo(result.recorded[index].path)
    click.echo(run_summary(result, name, seed), err=True)
    if result.failed:
        raise PlannedEpisodesFailedError(
            f"{len(result.failed)} planned episode(s) were not recorded (indices {_short_list(result.failed)})",
            f"run the same command with --run {name} --seed {seed}: it records only those")


def _short_list(values: list[int], limit: int = 8) -> str:
    return ", ".join(map(str, values[:limit])) + (", ..." if len(values) > limit else "")


def _play(config: PlayConfig) -> None:
    from gymrec.recorder.session import Session
    from gymrec.shared.spool.sinks import Sink

    if not config.headless:  # before anything is written: an invisible window records nobody
        from gymrec.shared.cli.display import require_display

        who = "nobody could see the game" if config.human else "nobody could watch the agent"
        require_display(who, "to record an agent without a display, add --headless --agent random", os.environ)
    spool = _recover(config)
    # The writer process starts first: its start-up overlaps the env's (Session.run says why).
    with Sink(process=True, spill_dir=config.spill_dir) as sink:
        made = make_env(config.env_id, dict(config.env_kwargs))
        source: ActionSource | None = None
        interrupts = Interrupts()  # Ctrl-C and SIGTERM stop like Esc, between two steps
        previous = interrupts.install()
        try:
            source = action_source(config, made)
            if not config.human:  # steps/s, episodes and ETA on a terminal (shared.cli.progress)
                from gymrec.recorder.tracked_source import TrackedSource

                source = TrackedSource(source, progress_for(sys.stderr, config.episodes, PROG))
            result = Session(config, made, source, interrupts).run(sink)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if source is not None:
                source.close()
            made.env.close()
    for path in result.kept:
        click.echo(str(path))
    click.echo(summary(len(result.kept), result.steps, len(result.discarded), spool), err=True)


def summary(kept: int, steps: int, discarded: int, spool: Path, workers: int = 1) -> str:
    """The run's last line: the kept episodes and their steps; discarded ones only counted as such."""
    line = f"{kept} episode(s), {steps} steps recorded in {spool}" + (f" by {workers} workers" if workers > 1 else "")
    return line + (f"; {discarded} discarded (kept in the spool, never uploaded)" if discarded else "")


@click.command("gymrec-play", cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("env_id", required=False)
@click.option("--list", "list_envs_flag", is_flag=True, help="List environments (ENV_ID then filters) and exit.")
@click.option("--installed", is_flag=True, help="With --list: only the environments that are ready to play.")
@click.option("--fps", type=FiniteFloat(MIN_FPS, MAX_FPS), help="Steps per second (default: the console's true speed).")
@click.option("--scale", type=click.IntRange(1, 8), default=3, show_default=True, help="Window scale.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Seed of the first episode.")
@click.option("--episodes", type=click.IntRange(1, MAX_COUNT), help="Stop after N episodes (default: until Esc; 1 for agents).")
@click.option("--max-steps", type=click.IntRange(1, MAX_COUNT), help="End (truncate) an episode after N steps.")
@click.option("--spool", type=click.Path(path_type=Path), help="Spool directory (default: $GYMREC_SPOOL or ~/.local/share/gymrec/spool).")
@click.option("--agent", default=HUMAN, show_default=True, help="human, random or MODULE:CALLABLE.")
@click.option("--headless", is_flag=True, help="No window and no pacing (agents only).")
@click.option("--env-kwarg", "env_kwargs", multiple=True, metavar="KEY=VALUE", help="Extra gymnasium.make kwarg.")
@click.option("--keymap", "keymap_path", type=click.Path(path_type=Path), help="A keymap TOML file.")
@click.option("--player", default="", help="Player name stored with each episode.")
@click.option("--takeover", is_flag=True, help="With --agent: the agent plays in the window; T takes control and gives it back.")
@click.option("--step-mode", is_flag=True, help="The game advances only while you press or hold a key or button.")
@click.option("--publish-host", is_flag=True, help="Store this machine's hostname with each episode (it identifies it).")
@click.option("--workers", type=click.IntRange(1, 64), help="Record with N processes (agents only), each its own env and seed; with --ray: N actors in all.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="Record a planned run on a Ray cluster (ADDRESS, or 'auto'; alone: a local one). Needs pip install 'gymrec[ray]'.")
@click.option("--run", "run_name", help="With --ray: the run's name (default: ENV and the time); the same name and seed plan the same episodes.")
@click.option("-v", "--verbose", is_flag=True, help="Log progress.")
@cli_edge(PROG)
def main(env_id: str | None, list_envs_flag: bool, installed: bool, fps: float | None, scale: int, seed: int | None,
         episodes: int | None, max_steps: int | None, spool: Path | None, agent: str, headless: bool,
         env_kwargs: tuple[str, ...], keymap_path: Path | None, player: str, takeover: bool, step_mode: bool,
         publish_host: bool, workers: int | None, ray_address: str | None, run_name: str | None, verbose: bool) -> None:
    """Play ENV_ID and record every episode into the spool.

    \b
    In the game window:
      any key or button   start an episode (nothing is recorded before)
      Esc                 quit (the episode so far is kept)
      P                   pause / resume
      Backspace           discard this episode
      F1                  help: what each key does in this game (pauses)
      hold R              rewind; play on from there (what follows is a branch episode)
      T                   with --takeover: take control from the agent, or give it back
    At the end of an episode: any key for the next one, Backspace to discard it, Esc to quit.
    Game controllers work alongside the keyboard (d-pad, left stick, A/B/X/Y, shoulders, start/select).
    """
    configure_logging(verbose)
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # keep stderr for gymrec's own lines
    if list_envs_flag:
        _list(env_id or "", installed)
        return
    if installed:
        raise click.UsageError("--installed only makes sense with --list")
    if not env_id:
        raise click.UsageError("give an ENV_ID; gymrec-play --list shows them")
    if headless and agent == HUMAN:
        raise BadAgentError("--headless needs an agent: a human cannot play without a window", "add --agent random")
    if takeover and (agent == HUMAN or headless):
        raise click.UsageError("--takeover needs an --agent playing in a window (not --headless) to take over from")
    if step_mode and (agent != HUMAN or headless):
        raise click.UsageError("--step-mode is for human play: the game waits for your key presses")
    if ray_address is None and run_name is not None:
        raise click.UsageError("--run names a planned --ray run; add --ray, or drop --run")
    if ray_address is not None and agent == HUMAN:
        raise BadAgentError("--ray records with agents: a human plays one game at a time", "add --agent MODULE:CALLABLE")
    if workers is not None and agent == HUMAN:
        raise BadAgentError("--workers records with agents: a human plays one game at a time",
                            "add --agent random, or drop --workers")
    if keymap_path is not None and not keymap_path.is_file():
        from gymrec.shared.errors import KeymapError

        raise KeymapError(f"keymap file {keymap_path} does not exist", "pass an existing TOML file to --keymap")
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
        player=player,  # never the login name: it would be published (docs/endings.md)
        step_mode=step_mode,
        publish_host=publish_host,
        takeover=takeover,
        spill_dir=Path(tempfile.gettempdir()),
    )
    # SIGTERM stops like Esc: the episode is sealed, not left for recovery.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if ray_address is not None:
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # Ray's usage report is a network call: off unless asked
        _play_ray(dataclasses.replace(config, headless=True), ray_address, workers, run_name, spool)
    elif workers is not None and workers > 1:
        _play_workers(config, workers)
    else:
        _play(config)


if __name__ == "__main__":
    sys.exit(main())
