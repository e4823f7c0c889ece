"""``gymrec-uploader``: the uploader's command line, the only place that reads the environment."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType

import click

from gymrec.shared.cli.edge import FiniteFloat, OneLineGroup, cli_edge, configure_logging, debug_enabled
from gymrec.shared.cli.paths import data_dir, default_spool
from gymrec.shared.errors import AuthError, CorruptShardError, DatasetError, HubUnavailableError
from gymrec.shared.hub.client import set_request_timeout
from gymrec.shared.hub.credentials import hub_access
from gymrec.shared.spool.directory import check_spool
from gymrec.shared.spool.withdrawals import check_participant, request_withdrawal
from gymrec.uploader.config import UploaderConfig, check_repo_id
from gymrec.uploader.convert import ConvertOptions
from gymrec.uploader.daemon import Uploader
from gymrec.uploader.hub import HubPusher, RetryPolicy
from gymrec.uploader.local import LocalWriter
from gymrec.uploader.status import STATES, spool_status

PROG = "gymrec-uploader"


def _utf8_dir(path: Path) -> Path:
    """A dataset directory's name goes into parquet paths and the card, which are UTF-8 only: refuse
    another name now, in one line, rather than fail at every upload."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(path).decode("utf-8", "backslashreplace")
        raise DatasetError(f"the dataset directory {shown} is not a UTF-8 name",
                           "pass a --local-dir whose name is valid UTF-8; nothing was written") from None
    return path


def _quiet_broken_pipe() -> None:
    """stdout's reader went away (``| head``): end quietly, as Unix tools do, with nothing left to flush."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _install_stop(stop: threading.Event, abort: threading.Event) -> None:
    """First SIGTERM / Ctrl-C: commit the pending batch, then exit. Second: give up waiting, keep it queued."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            abort.set()
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


@click.group("gymrec-uploader", cls=OneLineGroup, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--spool", type=click.Path(path_type=Path), help="Spool directory (default: $GYMREC_SPOOL or ~/.local/share/gymrec/spool).")
@click.option("--repo-id", help="Dataset repo for every env (default: <you>/gymrec-<env-slug>, one repo per env).")
@click.option("--private", is_flag=True, help="Create new repos as private.")
@click.option("--once", is_flag=True, help="Upload what is in the spool now, then exit.")
@click.option("--commit-every", type=FiniteFloat(0.0, 86400.0), default=60.0, show_default=True,
              help="Seconds from a batch's first episode to its commit.")
# Up to 1 M episodes a batch: a cluster node publishing at the repo's commit budget (docs/cluster.md) needs
# ~170 k a commit; a batch costs one manifest write and one shard per config, whatever its size.
@click.option("--batch-episodes", type=click.IntRange(1, 1_000_000), default=100, show_default=True,
              help="Commit sooner when a batch holds this many episodes.")
@click.option("--batch-mb", type=FiniteFloat(1.0, 100_000.0), default=256.0, show_default=True,
              help="Commit sooner when a batch holds about this much converted data (MB).")
@click.option("--local-dir", type=click.Path(path_type=Path), help="Write a local dataset here instead of pushing (the default without a token).")
@click.option("--endpoint", help="Hub endpoint (default: $HF_ENDPOINT or https://huggingface.co).")
@click.option("--workers", type=click.IntRange(1, 256), help="Frame-encoding threads (default: the number of cores).")
@click.option("--min-active", type=FiniteFloat(0.0, 1.0), default=0.0, show_default=True,
              help="Leave human episodes whose active fraction (steps with input / steps) is below this in the spool.")
@click.option("--delete-after-upload", is_flag=True, help="Delete episodes from the spool once on the Hub (keeps the receipt).")
@click.option("--stale-after", type=FiniteFloat(1.0, 30 * 86400.0), default=300.0, show_default=True, help="Seconds without heartbeat before another uploader's claim is taken over.")
@click.option("--rescan-interval", type=FiniteFloat(0.1, 86400.0), default=30.0, show_default=True, help="Seconds between spool rescans.")
@click.option("--timeout", type=FiniteFloat(0.1, 3600.0), default=60.0, show_default=True,
              help="Seconds without a usable answer before the Hub counts as down: a request's wait, and one call's retries.")
@click.option("--backoff-base", type=FiniteFloat(0.01, 600.0), default=1.0, show_default=True,
              help="Seconds before the first retry (and the first probe of a down Hub); each wait doubles.")
@click.option("--backoff-cap", type=FiniteFloat(0.01, 3600.0), default=60.0, show_default=True,
              help="The longest wait between retries, and between probes of a down Hub.")
@click.option("--force-adopt", is_flag=True,
              help="Write into a --local-dir or repo that holds someone else's files (none is deleted; their README.md is kept).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.pass_context
@cli_edge(PROG)
def main(ctx: click.Context, spool: Path | None, repo_id: str | None, private: bool, once: bool,
         commit_every: float, batch_episodes: int, batch_mb: float, local_dir: Path | None,
         endpoint: str | None, workers: int | None, min_active: float, delete_after_upload: bool, stale_after: float,
         rescan_interval: float, timeout: float, backoff_base: float, backoff_cap: float, force_adopt: bool, verbose: bool) -> None:
    """Upload sealed gymrec episodes as a Hugging Face dataset (or a local one without a token)."""
    configure_logging()
    if not debug_enabled():
        # watchdog logs an ERROR when an event lands as its observer stops (e.g. a claim released on
        # a revoked token): stderr must stay one line.
        logging.getLogger("watchdog").setLevel(logging.CRITICAL)
        # huggingface_hub logs each of its own HTTP retries; ours say what matters once (GYMREC_DEBUG shows them)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    if verbose:  # our own story only: client libraries' debug logs are noise (GYMREC_DEBUG=1 shows them)
        for name in ("gymrec.uploader", "gymrec.recorder"):
            logging.getLogger(name).setLevel(logging.INFO)
    environ = os.environ
    ctx.obj = spool or default_spool(environ)
    if ctx.invoked_subcommand is not None:
        return
    repo_id = check_repo_id(repo_id) if repo_id is not None else None
    access = hub_access(endpoint, environ, Path.cwd())
    if (repo_id is not None or endpoint is not None) and access.token is None and local_dir is None:
        raise AuthError(
            f"--{'repo-id' if repo_id is not None else 'endpoint'} needs a Hub token and none was found",
            "set HF_TOKEN, put HF_TOKEN=... in ./.env or run 'hf auth login'; or pass --local-dir DIR",
        )
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # stderr is for one-line errors and our log
    set_request_timeout(timeout)
    config = UploaderConfig(
        debug=debug_enabled(),
        spool=ctx.obj,
        local_dir=_utf8_dir(local_dir or data_dir(environ) / "dataset"),
        local_only=local_dir is not None,
        repo_id=repo_id,
        private=private,
        endpoint=access.endpoint,
        token=access.token,
        once=once,
        commit_every=commit_every,
        batch_episodes=batch_episodes,
        batch_bytes=int(batch_mb * (1 << 20)),
        delete_after_upload=delete_after_upload,
        min_active=min_active,
        convert=ConvertOptions(workers=workers or max(1, os.cpu_count() or 1)),
        stale_after=stale_after,
        rescan_interval=rescan_interval,
        heartbeat_interval=min(15.0, stale_after / 4),
        force_adopt=force_adopt,
        retry=RetryPolicy(base_delay=backoff_base, max_delay=max(backoff_base, backoff_cap), budget=timeout),
    )
    stop, abort = threading.Event(), threading.Event()
    _install_stop(stop, abort)
    where = "the Hub" if config.hub else str(config.local_dir)
    if not config.hub and local_dir is None:  # say once why nothing goes to the Hub
        where += " (no Hub token found: HF_TOKEN, ./.env or 'hf auth login'; a later run with one pushes these)"
    if not once:
        click.echo(f"{PROG}: watching {config.spool}, uploading to {where} (Ctrl-C to stop)", err=True)
    report = None if once else functools.partial(click.echo, err=True)  # the daemon: one line per commit
    uploader = Uploader(config, stop, abort, report)
    summary = uploader.run()
    click.echo(
        f"{len(summary.uploaded)} uploaded to {where}, {len(summary.already)} already there, "
        f"{len(summary.quarantined)} quarantined, {len(summary.failed)} failed"
        + (f", {summary.withdrawn} withdrawn from the dataset" if summary.withdrawn else "")
    )
    if once and uploader.outage is not None and uploader.outage.down is not None:
        raise uploader.outage.once_error()  # the endpoint, that it is down, how many stay queued: one line
    if summary.failed and once:
        target = (config.endpoint or "https://huggingface.co") if config.hub else str(config.local_dir)
        why = f" ({summary.last_failure})" if summary.last_failure else ""
        raise HubUnavailableError(f"{len(summary.failed)} episode(s) could not be uploaded to {target} and stay "
                                  f"queued{why}", "run again later")  # fmt: skip


@main.command()
@click.option("--spool", "spool_opt", type=click.Path(path_type=Path), help="Spool directory.")
@click.option("--min-active", type=FiniteFloat(0.0, 1.0), default=0.0, show_default=True,
              help="The uploader's --min-active: count the episodes it leaves in the spool as low-activity.")
@click.pass_context
@cli_edge(PROG)
def status(ctx: click.Context, spool_opt: Path | None, min_active: float) -> None:
    """Episodes and frames per state: waiting, claimed, uploaded, quarantined, discarded, empty, low-activity, partial."""
    spool = check_spool(spool_opt or ctx.obj, create=False)
    counts = spool_status(spool, min_active)
    try:
        click.echo(f"{'state':<15} {'episodes':>8} {'frames':>10}")
        for state in STATES:
            click.echo(f"{state:<15} {counts[state].episodes:>8} {counts[state].frames:>10}")
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()


@main.command()
@click.argument("participant")
@click.option("--spool", "spool_opt", type=click.Path(path_type=Path), help="Spool directory.")
@click.pass_context
@cli_edge(PROG)
def withdraw(ctx: click.Context, participant: str, spool_opt: Path | None) -> None:
    """Withdraw a study participant (their salted hash): delete their episodes from the spool now, and
    from the dataset at the uploader's next commit."""
    configure_logging()
    participant = check_participant(participant.strip())  # before the spool is looked at: nothing is touched
    spool = check_spool(spool_opt or ctx.obj, create=False)
    receipt = request_withdrawal(spool, participant)
    live = f"; {len(receipt.live)} still being recorded (deleted once sealed)" if receipt.live else ""
    click.echo(f"withdrew {participant}: {len(receipt.deleted)} episode(s) deleted from {spool}{live}; "
               "the uploader removes their rows from the dataset at its next commit")  # fmt: skip


@main.command()
@click.option("--repo-id", help="The Hub dataset to compact.")
@click.option("--local-dir", type=click.Path(path_type=Path),
              help="The local dataset to compact (default: the uploader's, ~/.local/share/gymrec/dataset).")
@click.option("--endpoint", help="Hub endpoint (default: $HF_ENDPOINT or https://huggingface.co).")
@click.option("--target-mb", type=FiniteFloat(1.0, 100_000.0), default=500.0, show_default=True,
              help="Merge each config's small shards into files of about this size.")
@click.option("--to-format", type=click.Choice(["3"]), default=None,
              help="Convert a format-2 dataset to format 3 (frame blocks), checking every frame's hash, instead of merging.")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@cli_edge(PROG)
def compact(repo_id: str | None, local_dir: Path | None, endpoint: str | None, target_mb: float, to_format: str | None,
            verbose: bool) -> None:  # fmt: skip
    """Merge each config's small shards into large ones, in one commit (safe while others upload).

    With --to-format 3: convert a format-2 dataset to format 3 instead, losslessly (a rerun after an
    interruption finishes it)."""
    configure_logging(verbose)
    if repo_id is not None and local_dir is not None:
        raise click.UsageError("pass one of --repo-id ID or --local-dir DIR, not both")
    environ = os.environ
    if repo_id is None:  # the uploader's own default target, so 'compact' after 'gymrec-uploader' just works
        local_dir = local_dir or data_dir(environ) / "dataset"
    target = int(target_mb * (1 << 20))
    options = ConvertOptions(workers=1 if to_format is None else max(1, os.cpu_count() or 1))
    with tempfile.TemporaryDirectory(prefix="gymrec-compact-") as tmp:
        if local_dir is not None:
            local_dir = _utf8_dir(local_dir)
            if not (local_dir / "meta" / "info.json").is_file():
                raise DatasetError(f"{local_dir} is not a gymrec dataset (no meta/info.json)", "pass --local-dir DIR")
            writer = LocalWriter(local_dir)
            if to_format is not None:
                _say_converted(str(local_dir), writer.to_format3(options))
                return
            replaced, written = writer.compact_shards(target, options)
            where = str(local_dir)
        else:
            repo_id = check_repo_id(str(repo_id))
            access = hub_access(endpoint, environ, Path.cwd())
            if access.token is None:
                raise AuthError("compact --repo-id needs a Hub token and none was found",
                                "set HF_TOKEN, put HF_TOKEN=... in ./.env or run 'hf auth login'")  # fmt: skip
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
            pusher = HubPusher(access.endpoint, access.token, False, RetryPolicy(), threading.Event())
            if to_format is not None:
                _say_converted(repo_id, pusher.to_format3(repo_id, Path(tmp), options))
                return
            replaced, written = pusher.compact_shards(repo_id, target, Path(tmp), options)
            where = repo_id
    click.echo(f"compacted {where}: {replaced} shards merged into {written}")
    skipped = (writer if local_dir is not None else pusher).skipped
    if skipped:  # the rest was compacted; these are damaged: say so with the corruption code
        raise CorruptShardError(f"{len(skipped)} shard(s) of {where} do not read back and were left as they are: "
                                f"{'; '.join(skipped)}", "restore them from a copy, or remove them by hand")


def _say_converted(where: str, done: tuple[int, int, int]) -> None:
    shards, episodes, frames = done
    if shards == 0:
        click.echo(f"{where} is already format 3: nothing to convert")
    else:
        click.echo(f"converted {where} to format 3: {shards} shards, {episodes} episodes, {frames} frames, every frame hash equal")
