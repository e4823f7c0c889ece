"""Default locations, computed from an environment mapping the CLI edge passes in.

Only the mapping is read (no ``Path.home()``): a process without ``HOME`` gets a one-line error naming
what to set, not a guess from the password database.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from gymrec.shared.errors import SpoolError


def data_dir(environ: Mapping[str, str]) -> Path:
    """``$XDG_DATA_HOME/gymrec``, else ``$HOME/.local/share/gymrec``."""
    base = environ.get("XDG_DATA_HOME")
    if base:
        return Path(base) / "gymrec"
    home = environ.get("HOME")
    if not home:
        raise SpoolError("neither HOME nor XDG_DATA_HOME is set, so gymrec has no default data directory",
                         "set HOME (or XDG_DATA_HOME), or name the directory on the command line")
    return Path(home) / ".local" / "share" / "gymrec"


def default_spool(environ: Mapping[str, str]) -> Path:
    """``$GYMREC_SPOOL``, else ``$XDG_DATA_HOME/gymrec/spool`` (``~/.local/share/gymrec/spool``)."""
    explicit = environ.get("GYMREC_SPOOL")
    return Path(explicit) if explicit else data_dir(environ) / "spool"
