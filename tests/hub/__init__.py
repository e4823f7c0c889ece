"""A Hub-compatible HTTP server for the test suite.

The real huggingface_hub / datasets clients talk to it over 127.0.0.1, so tests exercise the exact
requests production sends. It implements the subset those clients use: repo create/info, whoami,
preupload, the LFS batch API with basic transfer, NDJSON commits (with `parentCommit` checks),
tree / paths-info / commits / refs listings and `resolve` downloads with Range support.
Repos are linear commit lists on `main`, each commit a full snapshot. Faults can be injected per
endpoint (5xx, 429, 409, dropped connections, lost responses) and requests are counted in `stats`.

Modules: `state` (repos, commits, objects), `wire` (answers, requests, routes), `faults`,
`handler` (HTTP plumbing, auth), `endpoints` (the API) and `server` (`HubServer`, `running_hub`).
"""

from __future__ import annotations

from .faults import FAULT_KINDS, WRITE_ENDPOINTS, FaultInjector, FaultPlan
from .server import HubServer, running_hub
from .state import (
    GITATTRIBUTES,
    LFS_SIZE_THRESHOLD,
    LFS_SUFFIXES,
    FileEntry,
    HubCommit,
    HubError,
    HubState,
    is_lfs_path,
)
from .wire import REPO_TYPES, URL_PREFIX, parse_form_or_json, split_path

__all__ = [
    "FAULT_KINDS",
    "GITATTRIBUTES",
    "LFS_SIZE_THRESHOLD",
    "LFS_SUFFIXES",
    "REPO_TYPES",
    "URL_PREFIX",
    "WRITE_ENDPOINTS",
    "FaultInjector",
    "FaultPlan",
    "FileEntry",
    "HubCommit",
    "HubError",
    "HubServer",
    "HubState",
    "is_lfs_path",
    "parse_form_or_json",
    "running_hub",
    "split_path",
]
