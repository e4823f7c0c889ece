"""``gymrec-view``: browse a spool, a local dataset or a Hub dataset in the browser, behind an admin token."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import click

from gymrec.replay.view.catalog import Catalog, DatasetCatalog, SpoolCatalog
from gymrec.shared.cli.edge import OneLineCommand, cli_edge, configure_logging
from gymrec.shared.errors import ViewerError
from gymrec.shared.hub.credentials import HubAccess, hub_access
from gymrec.shared.spool import schema

PROG = "gymrec-view"
DEFAULT_PORT = 8765
HUB_TIMEOUT_S = 60.0  # as gymrec-replay: a stalled Hub must not hang a page forever
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ViewConfig:
    source: str
    host: str
    port: int
    token: str = field(repr=False)
    token_file: Path | None
    hub: HubAccess


def open_catalog(source: str, hub: HubAccess) -> Catalog:
    """SOURCE as the viewer reads it: a spool, a local dataset directory, or a Hub repo ``owner/name``."""
    path = Path(source)
    if path.exists():
        if not path.is_dir():
            raise ViewerError(f"{source} is a file", "pass a spool directory, a dataset directory or a Hub repo owner/name")
        if (path / schema.METADATA_NAME).exists():
            raise ViewerError(f"{source} is one episode, not a spool", f"pass the spool holding it ({path.parent})")
        from gymrec.shared.dataset.index import DatasetIndex
        from gymrec.shared.dataset.reader import LocalFiles, is_dataset_dir

        return DatasetCatalog(DatasetIndex(LocalFiles(path))) if is_dataset_dir(path) else SpoolCatalog(path)
    if _REPO_ID.match(source) and not source.startswith((".", "/")):
        from gymrec.shared.dataset.hub_words import quiet_client_logs
        from gymrec.shared.dataset.index import DatasetIndex
        from gymrec.shared.dataset.reader import HubFiles
        from gymrec.shared.hub.client import set_request_timeout

        quiet_client_logs(False)
        set_request_timeout(HUB_TIMEOUT_S)
        return DatasetCatalog(DatasetIndex(HubFiles(source, hub.endpoint, hub.token)))
    raise ViewerError(f"{source} is neither a directory nor a Hub repo id",
                      "pass a spool directory, a dataset directory or a Hub dataset as owner/name")


def listen(host: str, port: int) -> socket.socket:
    """The bound socket, before anything is printed: a busy port is one line, not a server that never starts."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
    except OSError as e:
        raise ViewerError(f"cannot listen on {host}:{port}: {e.strerror or e}", "pass another --port (0: any free one)") from e
    return sock


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(config: ViewConfig, catalog: Catalog) -> None:
    import uvicorn

    from gymrec.replay.view.app import Viewer, ViewSettings, build_app
    from gymrec.replay.view.verdicts import Verdicts

    sock = listen(config.host, config.port)
    port = sock.getsockname()[1]
    shown_host = f"[{config.host}]" if ":" in config.host else config.host
    with tempfile.TemporaryDirectory(prefix="gymrec-view-diffs-") as diffs:
        verdicts = Verdicts(Path(diffs))
        app = build_app(Viewer(catalog, verdicts), ViewSettings(config.token, f"gymrec_view_{port}"))
        count = len(catalog.rows())
        url = f"http://{shown_host}:{port}/episodes"
        if config.token_file is None:
            click.echo(f"{PROG}: {count} episodes in {catalog.where}: open {url}?token={config.token}")
        else:
            click.echo(f"{PROG}: {count} episodes in {catalog.where}: open {url}?token=<the token in {config.token_file}>")
        if count == 0:
            click.echo(f"{PROG}: warning: {catalog.where} holds no sealed episodes (is it the right spool or dataset?)",
                       err=True)  # fmt: skip
        if not is_loopback(config.host):
            click.echo(f"{PROG}: warning: listening on {config.host}, not only this machine: anyone who can reach it "
                       "and has the token sees every episode", err=True)  # fmt: skip
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
        try:
            server.run(sockets=[sock])
        except KeyboardInterrupt:  # uvicorn stops cleanly on Ctrl-C, then raises it again: stopping is the way out
            click.echo(f"{PROG}: stopped", err=True)
        finally:
            verdicts.close()
            sock.close()


@click.command(PROG, cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("source")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (other than loopback: reachable by others).")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True, help="Port (0: any free one).")
@click.option("--token-file", type=click.Path(path_type=Path, dir_okay=False), help="Read the admin token from this file (default: a new random token, printed once).")
@click.option("--endpoint", help="Hub endpoint for an owner/name SOURCE (default: $HF_ENDPOINT or huggingface.co).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@cli_edge(PROG)
def main(source: str, host: str, port: int, token_file: Path | None, endpoint: str | None, verbose: bool) -> None:
    """Browse the episodes of SOURCE (a spool, a dataset directory or a Hub dataset owner/name) in a browser.

    Lists episodes with filters, plays one back on a canvas with its action, reward and actor per step,
    shows its lineage and, on request, its replay verdict. Read-only; every page needs the admin token.
    """
    configure_logging(verbose)
    from gymrec.replay.view.auth import checked_token, new_token

    if token_file is not None:
        try:
            text = token_file.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ViewerError(f"cannot read the token file {token_file}: {getattr(e, 'strerror', None) or e}",
                              "pass a readable --token-file, or none for a new token") from e  # fmt: skip
        token = checked_token(text, str(token_file))
    else:
        token = new_token()
    hub = hub_access(endpoint, os.environ, Path.cwd()) if not Path(source).exists() else HubAccess(None)
    config = ViewConfig(source=source, host=host, port=port, token=token, token_file=token_file, hub=hub)
    serve(config, open_catalog(config.source, config.hub))
