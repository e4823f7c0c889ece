"""The uploader's configuration: built once at the CLI edge, frozen, passed down."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from gymrec.shared.errors import RepoIdError
from gymrec.uploader.convert import ConvertOptions
from gymrec.uploader.hub import RetryPolicy

_REPO_PART = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")


def check_repo_id(repo_id: str) -> str:
    """``owner/name`` (or a bare ``name``), Hub-legal, with no path tricks."""
    parts = repo_id.split("/")
    bad = (
        not repo_id
        or repo_id.startswith("/")
        or len(parts) > 2
        or any(not _REPO_PART.match(p) or ".." in p or "--" in p for p in parts)
    )
    if bad:
        raise RepoIdError(
            f"{repo_id!r} is not a valid repo id",
            "use OWNER/NAME with letters, digits, '-', '_' or '.', e.g. alice/gymrec-breakout",
        )
    return repo_id


@dataclass(frozen=True)
class UploaderConfig:
    spool: Path
    local_dir: Path
    repo_id: str | None = None
    private: bool = False
    endpoint: str | None = None
    token: str | None = field(default=None, repr=False)  # never printed, logged or written
    local_only: bool = False  # --local-dir given: write locally even when a token exists
    once: bool = False
    commit_every: float = 60.0  # seconds from a batch's first episode to its commit
    batch_episodes: int = 100  # ... or sooner, at this many episodes
    batch_bytes: int = 256 << 20  # ... or this much converted data
    delete_after_upload: bool = False
    min_active: float = 0.0  # --min-active: human episodes less active than this stay in the spool (0: upload all)
    convert: ConvertOptions = field(default_factory=ConvertOptions)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    rescan_interval: float = 30.0
    heartbeat_interval: float = 15.0
    stale_after: float = 300.0
    nice: int = 10
    force_adopt: bool = False  # --force-adopt: write into a target that holds someone else's files (deleting none)
    debug: bool = False  # GYMREC_DEBUG: tracebacks in the per-episode log lines

    @property
    def hub(self) -> bool:
        """With a token the episodes go to the Hub; without one (or with --local-dir), to a directory."""
        return bool(self.token) and not self.local_only
