"""``gymrec-export``: recorded episodes as a Minari dataset or as MP4 videos.

Sources are whatever replay reads (``gymrec.shared.dataset.select``): the spool, a local gymrec dataset or
a Hub dataset. Everything read from the environment (spool, token, endpoint, Minari's data path,
whether stderr is a terminal) is read here and passed down in frozen configs.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import re
import signal
import sys
from pathlib import Path

import click

from gymrec.export.minari_export import MinariConfig, export_minari
from gymrec.export.progress import Progress, ProgressFactory, silent
from gymrec.export.staging import check_target, prepare_folder
from gymrec.export.video import VideoOptions, encode
from gymrec.export.walk import each_episode
from gymrec.shared.cli.edge import OneLineCommand, OneLineGroup, cli_edge, configure_logging
from gymrec.shared.cli.paths import default_spool
from gymrec.shared.dataset.select import Job, Selection, jobs
from gymrec.shared.errors import DatasetError, EpisodeNotFoundError
from gymrec.shared.hub.credentials import HubAccess, hub_access
from gymrec.shared.spool.sources import EXIT_CORRUPT, EpisodeSource

PROG = "gymrec-export"
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
URL_LABELS = ("repository", "source", "homepage", "source code")


def _warn(line: str) -> None:
    click.echo(f"{PROG}: warning: {line}", err=True)


def _progress() -> ProgressFactory:
    if not sys.stderr.isatty():
        return silent

    def bar(total: int, desc: str, unit: str) -> Progress:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, leave=False, file=sys.stderr)

    return bar


def _access(endpoint: str | None) -> HubAccess:
    """The one token and endpoint rule every gymrec command uses (``shared.hub.credentials``); called only
    for a Hub source."""
    # huggingface_hub logs each retry twice (its handler and the root's): the failure is one line at
    # the edge; -v shows the retries.
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    logging.getLogger("huggingface_hub").setLevel(logging.DEBUG if verbose else logging.ERROR)
    return hub_access(endpoint, os.environ, Path.cwd())


def code_permalink() -> str | None:
    """The project URL from gymrec's package metadata (``[project.urls]``); None when it names none."""
    try:
        meta = importlib.metadata.metadata("gymrec")
    except importlib.metadata.PackageNotFoundError:
        return None
    urls = {}
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        urls[label.strip().lower()] = url.strip()
    home = meta.get_all("Home-page") or []
    return next((urls[k] for k in URL_LABELS if k in urls), None) or next(iter(home), None)


def _minari_root() -> Path:
    explicit = os.environ.get("MINARI_DATASETS_PATH")
    return Path(explicit) if explicit else Path.home() / ".minari" / "datasets"  # minari's own rule


def _published_source(source: str) -> str:
    """SOURCE as the Minari metadata names it: a Hub id as given, a local directory by its name only
    (its path would publish the exporter's home directory or login)."""
    path = Path(source)
    return path.resolve().name if path.is_dir() else source.removeprefix("hf://").removeprefix("datasets/")


def _source_selection(source: str, local_dir: Path | None, endpoint: str | None) -> Selection:
    path = Path(source)
    default = default_spool(os.environ)
    if path.is_dir():
        return Selection(key=str(path), all_=True, spool=default)
    repo_id = source.removeprefix("hf://").removeprefix("datasets/")
    if REPO_ID.match(repo_id) and not path.exists():
        access = _access(endpoint)
        return Selection(key=None, all_=True, spool=default, repo_id=repo_id, local_dir=local_dir,
                         endpoint=access.endpoint, token=access.token)
    raise DatasetError(f"{source} is neither a directory nor a Hub dataset id",
                       "pass a spool or dataset directory, or owner/name (hf://owner/name) for the Hub")


@click.group("gymrec-export", cls=OneLineGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Export recorded episodes as a Minari dataset or as MP4 videos."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the hidden temporary output is removed on the way out."""
    raise KeyboardInterrupt


@main.command("minari", cls=OneLineCommand)
@click.argument("source")
@click.argument("dataset_id")
@click.option("--env", "env_id", help="Export only the episodes of this env id (needed when SOURCE holds several).")
@click.option("--force", is_flag=True, help="Replace an existing dataset with this id.")
@click.option("--author", "credit_players", is_flag=True,
              help="Name the recorded players as the dataset's authors (off unless you pass it: players opt in).")
@click.option("--local-dir", type=click.Path(path_type=Path), help="With a Hub SOURCE: where to download it.")
@click.option("--endpoint", help="Hub endpoint (default: $HF_ENDPOINT or huggingface.co).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@cli_edge(PROG)
def minari_command(source: str, dataset_id: str, env_id: str | None, force: bool, credit_players: bool,
                   local_dir: Path | None, endpoint: str | None, verbose: bool) -> None:  # fmt: skip
    """Write the episodes of SOURCE (a spool, a gymrec dataset directory or a Hub dataset owner/name)
    as the Minari dataset DATASET_ID in Minari's data path ($MINARI_DATASETS_PATH or ~/.minari/datasets)."""
    configure_logging(verbose)
    config = MinariConfig(dataset_id=dataset_id, datasets_root=_minari_root(), env_id=env_id, force=force,
                          credit_players=credit_players, code_permalink=code_permalink(), source_label=source,
                          published_source=_published_source(source))
    check_target(config.datasets_root / dataset_id, force)
    todo = jobs(_source_selection(source, local_dir, endpoint))
    result = export_minari(todo, config, _progress(), _warn)
    skipped = f", {result.skipped} skipped" if result.skipped else ""
    skipped += f", {len(result.corrupt)} damaged left out" if result.corrupt else ""
    click.echo(f"{result.dataset_id}: {result.episodes} episode(s), {result.steps} steps of {result.env_id}"
               f"{skipped} -> {result.path}")
    if credit_players:
        click.echo(f"author: {', '.join(result.authors)}" if result.authors else
                   "author: none (no episode names a player; record with --player NAME to credit one)")
    if result.corrupt:
        sys.exit(EXIT_CORRUPT)


def _video_jobs(episode: str | None, all_dir: Path | None, spool: Path | None, repo_id: str | None,
                local_dir: Path | None, endpoint: str | None) -> list[Job]:  # fmt: skip
    access = _access(endpoint) if repo_id else HubAccess(None)
    selection = Selection(key=episode, all_=all_dir is not None, spool=spool or default_spool(os.environ),
                          repo_id=repo_id, local_dir=local_dir, endpoint=access.endpoint, token=access.token)
    return jobs(selection)


@main.command("video", cls=OneLineCommand)
@click.argument("episode", required=False)
@click.argument("out", required=False, type=click.Path(path_type=Path))
@click.option("--all", "all_dir", type=click.Path(path_type=Path),
              help="Write every episode of the source into this directory as <episode_id>.mp4.")
@click.option("--lossless", is_flag=True, help="H.264 RGB at crf 0 (libx264rgb): decodes to the recorded frames exactly.")
@click.option("--strip", "with_strip", is_flag=True, help="Add a status strip (step, return, action) below the game image.")
@click.option("--scale", type=click.IntRange(1, 8), default=1, show_default=True, help="Enlarge by whole pixels.")
@click.option("--force", is_flag=True, help="Replace existing videos.")
@click.option("--spool", type=click.Path(path_type=Path), help="Spool directory (default: $GYMREC_SPOOL or ~/.local/share/gymrec/spool).")
@click.option("--repo-id", help="A Hub dataset: EPISODE is an episode id, prefix or #index in it.")
@click.option("--local-dir", type=click.Path(path_type=Path), help="A local dataset directory (with --repo-id: where to download).")
@click.option("--endpoint", help="Hub endpoint (default: $HF_ENDPOINT or huggingface.co).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@cli_edge(PROG)
def video_command(episode: str | None, out: Path | None, all_dir: Path | None, lossless: bool, with_strip: bool,
                  scale: int, force: bool, spool: Path | None, repo_id: str | None, local_dir: Path | None,
                  endpoint: str | None, verbose: bool) -> None:  # fmt: skip
    """Write EPISODE as the MP4 OUT at its recorded fps, or with --all DIR every episode of the source
    (EPISODE may then name a spool or dataset directory)."""
    configure_logging(verbose)
    if all_dir is None and (episode is None or out is None):
        raise click.UsageError("pass EPISODE OUT.mp4, or --all DIR")
    if all_dir is not None and out is not None:
        raise click.UsageError("--all DIR writes one file per episode; do not pass OUT as well")
    options = VideoOptions(lossless=lossless, strip=with_strip, scale=scale, force=force)
    if all_dir is None and out is not None:
        check_target(out, force, file=True)
        prepare_folder(out.parent)
    todo = _video_jobs(episode, all_dir, spool, repo_id, local_dir, endpoint)
    if all_dir is not None:
        prepare_folder(all_dir, create=True)
        for job in todo:
            check_target(all_dir / f"{job.label.removesuffix('.zarr')}.mp4", force, file=True)

    def write(source: EpisodeSource) -> bool:
        target = all_dir / f"{source.id}.mp4" if all_dir is not None else out or Path(f"{source.id}.mp4")
        result = encode(source, target, options, _progress())
        click.echo(f"{result.path}: {result.frames} frames at {result.fps:g} fps, "
                   f"{result.bytes / max(1, result.frames):.0f} B/frame")
        return True

    tally = each_episode(todo, write, _warn)
    if tally.corrupt:
        click.echo(f"{PROG}: {tally.written} video(s) written, {len(tally.corrupt)} damaged episode(s) left out", err=True)
        sys.exit(EXIT_CORRUPT)
    if tally.written == 0:
        raise EpisodeNotFoundError("no episodes to export", "check EPISODE / --spool / --local-dir / --repo-id")
