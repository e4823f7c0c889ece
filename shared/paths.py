"""Default locations, computed from an environment mapping the CLI edge passes in."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def data_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_DATA_HOME") or str(Path(environ.get("HOME", str(Path.home()))) / ".local" / "share")
    return Path(base) / "gymrec"


def default_spool(environ: Mapping[str, str]) -> Path:
    """``$GYMREC_SPOOL``, else ``$XDG_DATA_HOME/gymrec/spool`` (``~/.local/share/gymrec/spool``)."""
    explicit = environ.get("GYMREC_SPOOL")
    return Path(explicit) if explicit else data_dir(environ) / "spool"
