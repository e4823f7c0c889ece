"""``gymrec-replay``: re-run recorded episodes and prove them bit-exact (or show them)."""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from gymrec.replay.verify import EnvPool, Result, Summary, VerifyOptions, verify
from gymrec.shared.cli.edge import FiniteFloat, OneLineCommand, cli_edge, configure_logging
from gymrec.shared.cli.paths import default_spool
from gymrec.shared.cli.progress import NoProgress, progress_for
from gymrec.shared.dataset.select import Job, Selection, jobs, spool_to_recover
from gymrec.shared.errors import GymrecError
from gymrec.shared.hub.credentials import HubAccess, hub_access
from gymrec.shared.spool.attrs import EpisodeAttrs
from gymrec.shared.spool.recovery import format_report, recover_orphans
from gymrec.shared.spool.schema import PAIRING_LAGGED, EndReason
from gymrec.shared.spool.sources import is_corruption

PROG = "gymrec-replay"


@dataclass(frozen=True)
class ReplayConfig:
    selection: Selection
    options: VerifyOptions
    render: bool
    fps: float | None
    verify: bool


def _warn(line: str) -> None:
    click.echo(f"{PROG}: warning: {line}", err=True)


def _recover(spool: Path) -> None:
    click.echo(format_report(recover_orphans(spool)), err=True, nl=False)


def lineage(attrs: EpisodeAttrs) -> str:
    """Where the episode came from, for the report: "branch of 1a2b3c4d at step 7", "takeover"; "" for neither."""
    parts = []
    if attrs.parent_episode_id is not None:
        parts.append(f"branch of {attrs.parent_episode_id[:8]} at step {attrs.branch_step}")
    if attrs.branched_at is not None:
        parts.append(f"branched at step {attrs.branched_at}")
    if attrs.takeover:
        parts.append("takeover")
    if attrs.action_pairing == PAIRING_LAGGED:  # human play recorded before 0.2: replays, but pairs t with t-1
        parts.append("lagged pairing")
    return ", ".join(parts)


def _one(job: Job, config: ReplayConfig, envs: EnvPool) -> tuple[Result, str] | None:
    source = job.open()
    if source is None or (not job.explicit and source.end_reason == EndReason.DISCARDED):
        return None
    if config.render:
        from gymrec.replay.render import show

        return show(source, config.options, fps=config.fps, verify=config.verify, warn=_warn), lineage(source.attrs)
    return verify(source, config.options, warn=_warn, envs=envs), lineage(source.attrs)


def _table(results: list[Result], lineages: dict[str, str]) -> str:
    rows = [("episode", "env", "steps", "result", "first divergence", "seconds")]
    for r in results:
        first = r.error or (r.divergence.line() if r.divergence else "-")
        where = lineages.get(r.episode_id, "")
        verdict = f"{r.status} ({where})" if where else r.status
        rows.append((r.episode_id[:8], r.env_id, str(r.length), verdict, first, f"{r.seconds:.2f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=False)) + "  " + row[-1] for row in rows]
    for r in results:
        lines += [f"{r.episode_id[:8]}: {w}" for w in r.warnings]
        if r.divergence and r.divergence.diff_png:
            lines.append(f"{r.episode_id[:8]}: diff image {r.divergence.diff_png}")
    return "\n".join(lines)


def run(config: ReplayConfig) -> int:
    spool = spool_to_recover(config.selection)
    if spool is not None:
        _recover(spool)
    todo = jobs(config.selection)
    single = len(todo) == 1 and not config.selection.all_
    summary = Summary()
    lineages: dict[str, str] = {}
    shown = config.selection.all_ and not config.render
    progress = progress_for(sys.stderr, len(todo), PROG) if shown else NoProgress()
    # One env per (env id, kwargs) for the whole run: making one costs ~120 ms (ALE).
    with EnvPool() as envs:
        for job in todo:
            try:
                done = _one(job, config, envs)
                result = done[0] if done is not None else None
                if done is not None and done[1]:
                    lineages[done[0].episode_id] = done[1]
            except GymrecError as e:
                if single:
                    raise
                _warn(str(e) if job.label in str(e) else f"{job.label}: {e}")
                status = "corrupt" if is_corruption(e) else "error"
                result = Result(job.label.removesuffix(".zarr"), "?", 0, status, 0.0, error=str(e).split(" (")[0])
            if result is not None:
                summary.results.append(result)
                progress.steps(result.steps_run)
            progress.episode()
    progress.close()
    if not summary.results:
        click.echo("no episodes to replay", err=True)
    else:
        click.echo(_table(summary.results, lineages))
    return summary.exit_code


HUB_TIMEOUT_S = 60.0  # huggingface_hub waits forever by default; a stalled Hub must not hang replay


@click.command("gymrec-replay", cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("episode", required=False)
@click.option("--spool", type=click.Path(path_type=Path), help="Spool directory (default: $GYMREC_SPOOL or ~/.local/share/gymrec/spool).")
@click.option("--repo-id", help="A Hub dataset (anyone's public one): EPISODE is an episode id, prefix or #index in it.")
@click.option("--local-dir", type=click.Path(path_type=Path), help="A local dataset directory (with --repo-id: where to download).")
@click.option("--endpoint", help="Hub endpoint (default: $HF_ENDPOINT or huggingface.co).")
@click.option("--all", "all_", is_flag=True, help="Replay every episode of the source (discarded ones are skipped).")
@click.option("--render", is_flag=True, help="Show the recording (and the live replay) in a window.")
@click.option("--fps", type=FiniteFloat(0.1, 1000.0), help="Playback speed for --render (default: the recorded fps).")
@click.option("--no-verify", is_flag=True, help="With --render: only show the recording; no env needed.")
@click.option("--diff-dir", type=click.Path(path_type=Path), help="Where divergence images go (default: a temp directory).")
@click.option("--check-frames/--no-check-frames", default=None,
              help="Prove every stored frame matches its stored hash (decodes all; default: on for format-3 datasets).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@cli_edge(PROG)
def main(episode: str | None, spool: Path | None, repo_id: str | None, local_dir: Path | None, endpoint: str | None,
         all_: bool, render: bool, fps: float | None, no_verify: bool, diff_dir: Path | None, check_frames: bool | None,
         verbose: bool) -> None:  # fmt: skip
    """Replay EPISODE (a spool path, an episode id or prefix, or a dataset) and verify it bit-exactly.

    \b
    Exit status:
      0  every episode is identical
      1  an episode diverged
      2  an error (bad input, a missing env or episode)
      4  --render was stopped with Esc
      5  stored data is corrupt (with --all: the other episodes were still replayed)
    """
    configure_logging(verbose)
    if no_verify and not render:
        raise click.UsageError("--no-verify only makes sense with --render")
    if render:  # before any episode is opened: a window nobody sees verifies nothing a person could watch
        from gymrec.shared.cli.display import require_display

        require_display("--render would show nobody anything", "or replay without --render", os.environ)
    access = hub_access(endpoint, os.environ, Path.cwd()) if repo_id else HubAccess(None)
    if repo_id:
        from gymrec.shared.dataset.hub_words import quiet_client_logs
        from gymrec.shared.hub.client import set_request_timeout  # imports huggingface_hub: only for the Hub

        quiet_client_logs(verbose)
        set_request_timeout(HUB_TIMEOUT_S)
    config = ReplayConfig(
        selection=Selection(
            key=episode,
            all_=all_,
            spool=spool or default_spool(os.environ),
            repo_id=repo_id,
            local_dir=local_dir,
            endpoint=access.endpoint,
            token=access.token,
        ),
        options=VerifyOptions(diff_dir=diff_dir or Path(tempfile.gettempdir()) / "gymrec-diffs", check_frames=check_frames),
        render=render,
        fps=fps,
        verify=not no_verify,
    )
    raise SystemExit(run(config))
