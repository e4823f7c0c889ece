"""HTTP plumbing of the test Hub: answers, parsed requests and the route table.

`route` maps a request line onto (endpoint name, handler method, route params) in one place, so
fault injection and request counting key on the same endpoint names tests use (`stats["commit"]`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .state import HubError

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    head_length: int | None = None  # Content-Length a HEAD answer announces


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, json.dumps(obj).encode(), dict(headers or {}))


def parse_form_or_json(body: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type:
        return dict(json.loads(body or b"{}"))
    return {k: v for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def split_path(raw: str) -> tuple[list[str], dict[str, list[str]]]:
    parts = urlsplit(raw)
    return [unquote(s) for s in parts.path.split("/") if s], parse_qs(parts.query)


@dataclass(frozen=True)
class Request:
    method: str
    query: dict[str, list[str]]
    body: bytes
    content_type: str
    repo_type: str = "dataset"
    repo_id: str = ""
    rev: str = "main"
    path: str = ""

    def flag(self, name: str) -> bool:
        return self.query.get(name, ["false"])[-1].lower() in ("1", "true")


def route(method: str, segs: list[str]) -> tuple[str, str, dict[str, str]]:
    """Map a request to (endpoint name, handler method name, route params)."""
    if segs[:1] == ["api"]:
        rest = segs[1:]
        fixed = {("GET", "whoami-v2"): "whoami", ("POST", "repos/create"): "create_repo",
                 ("DELETE", "repos/delete"): "delete_repo", ("POST", "validate-yaml"): "validate_yaml",
                 ("GET", "agent-harnesses"): "agent_harnesses"}
        if (method, "/".join(rest)) in fixed:
            name = fixed[(method, "/".join(rest))]
            return name, name, {}
        if len(rest) >= 3 and rest[0] in REPO_TYPES:
            repo = {"repo_type": REPO_TYPES[rest[0]], "repo_id": f"{rest[1]}/{rest[2]}"}
            tail = rest[3:]
            if not tail and method == "GET":
                return "repo_info", "repo_info", repo
            kind = tail[0] if tail else ""
            table = {("GET", "revision"): "repo_info", ("GET", "tree"): "tree", ("POST", "paths-info"): "paths_info",
                     ("POST", "preupload"): "preupload", ("POST", "commit"): "commit", ("GET", "commits"): "commits"}
            if (method, kind) in table and len(tail) >= 2:
                name = table[(method, kind)]
                return name, name, {**repo, "rev": tail[1], "path": "/".join(tail[2:])}
            if (method, tail) == ("GET", ["refs"]):
                return "refs", "refs", repo
        return "unknown", "unknown", {}
    if method == "PUT" and len(segs) == 2 and segs[0] == "lfs-upload":
        return "lfs_upload", "lfs_upload", {"path": segs[1]}
    repo_type = {"datasets": "dataset", "spaces": "space"}.get(segs[0], "model") if segs else "model"
    rest = segs[1:] if repo_type != "model" else segs
    if (method == "POST" and len(rest) == 6 and rest[1].endswith(".git") and rest[2:5] == ["info", "lfs", "objects"]
            and rest[5] in ("batch", "verify")):
        name = f"lfs_{rest[5]}"
        return name, name, {"repo_type": repo_type, "repo_id": f"{rest[0]}/{rest[1][:-4]}"}
    if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
        return "resolve", "resolve", {"repo_type": repo_type, "repo_id": f"{rest[0]}/{rest[1]}", "rev": rest[3],
                                      "path": "/".join(rest[4:])}
    return "unknown", "unknown", {}


def parse_range(header: str, total: int) -> tuple[int, int]:
    """Inclusive (start, end) of a single `bytes=` range, clamped to the file."""
    unit, _, spec = header.partition("=")
    first = spec.split(",")[0].strip()
    lo, _, hi = first.partition("-")
    if unit.strip() != "bytes" or (not lo and not hi):
        raise HubError(416, f"unsupported Range {header}", headers={"Content-Range": f"bytes */{total}"})
    if not lo:
        return max(total - int(hi), 0), total - 1
    return int(lo), min(int(hi), total - 1) if hi else total - 1
