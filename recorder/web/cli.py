"""``gymrec-serve``: run a study (a TOML file) as a web page; each participant plays in their browser."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
from pathlib import Path

import click

from gymrec.shared.cli.edge import OneLineCommand, cli_edge, configure_logging
from gymrec.shared.cli.paths import default_spool
from gymrec.shared.errors import ListenError, StudyError
from gymrec.shared.spool.directory import check_spool
from gymrec.shared.spool.recovery import format_report, recover_orphans
from gymrec.shared.study.study import load_study

PROG = "gymrec-serve"


def _check_listen(host: str, port: int) -> None:
    """Fail in one line now if the address is taken or not ours (uvicorn would log and exit)."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as e:
        raise ListenError(f"cannot listen on {host}:{port}: {e.strerror or e}",
                          "pick another --port, or stop what uses it") from e


def _admin_token(path: Path | None) -> tuple[str, bool]:
    """(token, generated): from the file, or a fresh one that is printed once."""
    if path is None:
        return secrets.token_urlsafe(24), True
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as e:
        raise StudyError(f"cannot read the admin token file {path}: {e.strerror or e}", "pass a readable file") from e
    if len(token) < 16:
        raise StudyError(f"the admin token in {path} is shorter than 16 characters", "put a long random token in it")
    return token, False


@click.command(PROG, cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("study_file", type=click.Path(path_type=Path))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port to listen on.")
@click.option("--spool", type=click.Path(path_type=Path), help="Spool directory (default: $GYMREC_SPOOL or ~/.local/share/gymrec/spool).")
@click.option("--max-participants", type=click.IntRange(1, 256), default=4, show_default=True,
              help="Participants playing at once (one process each); more see a waiting page.")
@click.option("--admin-token-file", type=click.Path(path_type=Path), help="Read the admin token from this file (default: a new one, printed once).")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), help="Seed of each participant's first episode (tests, pilots).")
@click.option("-v", "--verbose", is_flag=True, help="Log sessions starting and ending.")
@cli_edge(PROG)
def main(study_file: Path, host: str, port: int, spool: Path | None, max_participants: int,
         admin_token_file: Path | None, seed: int | None, verbose: bool) -> None:
    """Serve STUDY_FILE: consent, instructions, games, questionnaire, completion code (docs/browser.md)."""
    import uvicorn

    from gymrec.recorder.web.app import ServeConfig, Server

    configure_logging(verbose)
    study = load_study(study_file)
    _check_listen(host, port)
    root = check_spool(spool or default_spool(os.environ), create=True)
    click.echo(format_report(recover_orphans(root)), err=True, nl=False)
    token, generated = _admin_token(admin_token_file)
    config = ServeConfig(study=study, spool=root, admin_token=token, max_participants=max_participants,
                         spill_dir=Path(tempfile.gettempdir()), seed=seed)
    if generated:
        click.echo(f"admin token (shown once): {token}", err=True)
    click.echo(f"{PROG}: study {study.id} on http://{host}:{port}/?{study.participant_param}=ID "
               f"(spool {root}, at most {max_participants} at once)", err=True)
    # No access log: every page URL carries a participant's raw id.
    uvicorn.run(Server(config).app(), host=host, port=port, access_log=False, log_level="warning",
                ws_max_size=1 << 20)


if __name__ == "__main__":
    sys.exit(main())
