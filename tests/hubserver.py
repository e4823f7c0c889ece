"""A Hub-compatible HTTP server for the test suite: the import path tests use, kept stable.

The implementation lives in the `tests.hub` package (state, wire, faults, handler, endpoints,
server); this module re-exports its public names so `from tests.hubserver import running_hub`
(or `from hubserver import ...` with tests/ on sys.path) keeps working.
"""

from __future__ import annotations

from tests.hub import (
    FAULT_KINDS,
    GITATTRIBUTES,
    LFS_SIZE_THRESHOLD,
    LFS_SUFFIXES,
    REPO_TYPES,
    URL_PREFIX,
    WRITE_ENDPOINTS,
    FaultInjector,
    FaultPlan,
    FileEntry,
    HubCommit,
    HubError,
    HubServer,
    HubState,
    is_lfs_path,
    parse_form_or_json,
    running_hub,
    split_path,
)

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
