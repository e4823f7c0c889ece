"""A Hub-compatible HTTP server for the test suite.

The real huggingface_hub / datasets clients talk to it over 127.0.0.1, so tests exercise the exact
requests production sends. It implements the subset those clients use: repo create/info, whoami,
preupload, the LFS batch API with basic transfer, NDJSON commits (with `parentCommit` checks),
tree / paths-info / commits / refs listings and `resolve` downloads with Range support.
Repos are linear commit lists on `main`, each commit a full snapshot. Faults can be injected per
endpoint (5xx, 429, 409, dropped connections, lost responses) and requests are counted in `stats`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import random
import secrets
import socket
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

FAULT_KINDS = ("500", "502", "503", "504", "429", "409", "drop", "drop_after")
WRITE_ENDPOINTS = frozenset({"create_repo", "delete_repo", "preupload", "lfs_batch", "lfs_upload", "lfs_verify", "commit"})
# Same spirit as the Hub's default .gitattributes: binary data goes to LFS, small text stays in git.
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".webp", ".jpg", ".jpeg", ".gif", ".bmp", ".tiff", ".npy", ".npz",
                ".zarr", ".zip", ".gz", ".zst", ".tar", ".bin", ".pt", ".safetensors", ".h5", ".mp4", ".wav")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


@dataclass(frozen=True)
class FaultPlan:
    """Random faults: each matching request fails with probability `rate`, kind drawn from `kinds`.

    "drop" closes the connection before handling; "drop_after" handles the request (a commit lands)
    and then closes the connection instead of answering, like a response lost in transit.
    """

    rate: float = 0.0
    kinds: tuple[str, ...] = ("500", "503", "429", "drop")
    only_writes: bool = True
    endpoints: frozenset[str] | None = None
    seed: int = 0
    retry_after: int = 0

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(FAULT_KINDS)
        if unknown or not self.kinds:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}, got {self.kinds}")

    def applies_to(self, endpoint: str) -> bool:
        if self.endpoints is not None:
            return endpoint in self.endpoints
        return endpoint in WRITE_ENDPOINTS if self.only_writes else True


@dataclass(frozen=True)
class FileEntry:
    size: int
    sha256: str
    git_oid: str
    lfs: bool

    @property
    def pointer(self) -> bytes:
        return _lfs_pointer(self.sha256, self.size)


@dataclass(frozen=True)
class HubCommit:
    oid: str
    title: str
    message: str
    date: str
    files: Mapping[str, FileEntry]


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    commits: list[HubCommit] = field(default_factory=list)

    @property
    def head(self) -> HubCommit:
        return self.commits[-1]


class HubError(Exception):
    """An HTTP error answer, shaped like the Hub's (JSON body plus X-Error-* headers)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None,
                 body: Mapping[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code
        self.headers = dict(headers or {})
        self.body = dict(body or {})


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    head_length: int | None = None  # Content-Length a HEAD answer announces


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _regular_entry(data: bytes) -> FileEntry:
    return FileEntry(len(data), hashlib.sha256(data).hexdigest(), _git_oid(data), lfs=False)


def _lfs_entry(sha256: str, size: int) -> FileEntry:
    # Like git-lfs: the git blob is the pointer file, so its oid is the pointer's.
    return FileEntry(size, sha256, _git_oid(_lfs_pointer(sha256, size)), lfs=True)


def _json(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> _Response:
    return _Response(status, json.dumps(obj).encode(), dict(headers or {}))


class HubState:
    """Repos, commits and stored objects; every method is thread-safe."""

    def __init__(self, user: str, objects_dir: Path | None, conflict_status: int):
        self.user = user
        self.conflict_status = conflict_status
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._objects: dict[str, bytes] = {}
        self._objects_dir = objects_dir
        self._announced: dict[str, int] = {}
        if objects_dir is not None:
            objects_dir.mkdir(parents=True, exist_ok=True)

    # objects, keyed by sha256 (regular files too, so `resolve` has one place to read from)
    def has_object(self, oid: str) -> bool:
        with self._lock:
            return oid in self._objects or (self._objects_dir is not None and (self._objects_dir / oid).exists())

    def put_object(self, data: bytes) -> str:
        oid = hashlib.sha256(data).hexdigest()
        with self._lock:
            if self._objects_dir is None:
                self._objects[oid] = data
            else:
                (self._objects_dir / oid).write_bytes(data)
        return oid

    def get_object(self, oid: str) -> bytes:
        with self._lock:
            if self._objects_dir is None:
                return self._objects[oid]
            return (self._objects_dir / oid).read_bytes()

    def announce(self, oid: str, size: int) -> None:
        with self._lock:
            self._announced[oid] = size

    def announced_size(self, oid: str) -> int | None:
        with self._lock:
            return self._announced.get(oid)

    # repos
    def create_repo(self, repo_type: str, repo_id: str, private: bool, url: str = "") -> _Repo:
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # huggingface_hub reads "url" from this 409 body when exist_ok=True.
                raise HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            repo = _Repo(repo_type, repo_id, private)
            self.put_object(GITATTRIBUTES)
            files = {".gitattributes": _regular_entry(GITATTRIBUTES)}
            repo.commits.append(HubCommit(secrets.token_hex(20), "initial commit", "", _now(), MappingProxyType(files)))
            self._repos[(repo_type, repo_id)] = repo
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            if self._repos.pop((repo_type, repo_id), None) is None:
                raise HubError(404, "Repository not found", "RepoNotFound")

    def repo(self, repo_type: str, repo_id: str) -> _Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def revision(self, repo: _Repo, rev: str) -> HubCommit:
        with self._lock:
            if rev in ("main", "refs/heads/main"):
                return repo.head
            for commit in repo.commits:
                if commit.oid == rev:
                    return commit
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def commit(self, repo: _Repo, rev: str, header: Mapping[str, Any], ops: list[tuple[str, Mapping[str, Any]]]) -> HubCommit:
        with self._lock:
            if rev not in ("main", "refs/heads/main"):
                raise HubError(404, f"Invalid rev id: {rev} (this test Hub only commits to main)", "RevisionNotFound")
            parent = header.get("parentCommit")
            if parent is not None and parent != repo.head.oid:
                raise HubError(self.conflict_status, "A commit has happened since. Please refresh and try again.")
            files = dict(repo.head.files)
            for key, value in ops:
                path = str(value.get("path", "")).strip("/")
                if key == "file":
                    data = base64.b64decode(value["content"])
                    self.put_object(data)
                    files[path] = _regular_entry(data)
                elif key == "lfsFile":
                    oid = value["oid"]
                    if not self.has_object(oid):
                        raise HubError(422, f"LFS object {oid} for {path} was never uploaded")
                    files[path] = _lfs_entry(oid, len(self.get_object(oid)))
                elif key == "deletedFile":
                    if files.pop(path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                elif key == "deletedFolder":
                    doomed = [p for p in files if p.startswith(path + "/")]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                    for p in doomed:
                        del files[p]
                else:
                    raise HubError(400, f"unknown commit operation {key!r}")
            commit = HubCommit(secrets.token_hex(20), str(header.get("summary", "")),
                               str(header.get("description", "")), _now(), MappingProxyType(files))
            repo.commits.append(commit)
            return commit

    def last_commit_touching(self, repo: _Repo, upto: HubCommit, path: str) -> HubCommit:
        """The newest commit (not after `upto`) that changed `path` or anything under it."""
        def view(c: HubCommit) -> dict[str, str]:
            return {p: e.git_oid for p, e in c.files.items() if path == "" or p == path or p.startswith(path + "/")}

        with self._lock:
            history = repo.commits[: repo.commits.index(upto) + 1]
        for newer, older in zip(reversed(history), list(reversed(history))[1:], strict=False):
            if view(newer) != view(older):
                return newer
        return history[0]


class HubServer:
    """The server: start/stop in-process, inspect state, inject faults, read request counts."""

    def __init__(self, token: str = "hf_test_token", user: str = "tester", objects_dir: Path | None = None,
                 conflict_status: int = 412):
        self.token = token
        self.user = user
        self.revoked = False
        self.state = HubState(user, objects_dir, conflict_status)
        self._lock = threading.Lock()
        self._stats: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._plan: FaultPlan | None = None
        self._rng = random.Random(0)
        self._queued: dict[str, deque[str]] = {}
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self) -> HubServer:
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gymrec-hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.close_connections()  # idle keep-alive handlers would otherwise block server_close's join
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = None

    # faults and counts
    @property
    def faults(self) -> FaultPlan | None:
        return self._plan

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self._plan = plan
            self._rng = random.Random(plan.seed if plan else 0)

    def fail_next(self, endpoint: str, count: int = 1, kind: str = "503") -> None:
        """Make the next `count` requests to `endpoint` fail with `kind` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {FAULT_KINDS}")
        with self._lock:
            self._queued.setdefault(endpoint, deque()).extend([kind] * count)

    def draw_fault(self, endpoint: str) -> str | None:
        with self._lock:
            self._stats[endpoint] += 1
            queue = self._queued.get(endpoint)
            kind = queue.popleft() if queue else None
            plan = self._plan
            if kind is None and plan is not None and plan.applies_to(endpoint) and self._rng.random() < plan.rate:
                kind = self._rng.choice(plan.kinds)
            if kind is not None:
                self._injected[f"{endpoint}:{kind}"] += 1
            return kind

    @property
    def retry_after(self) -> int:
        return self._plan.retry_after if self._plan else 0

    @property
    def stats(self) -> Counter[str]:
        """Requests received per endpoint name (faulted ones included), e.g. stats["commit"]."""
        with self._lock:
            return Counter(self._stats)

    @property
    def injected(self) -> Counter[str]:
        """Faults injected, keyed "endpoint:kind"."""
        with self._lock:
            return Counter(self._injected)

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self._injected.clear()

    # state, without HTTP
    def files(self, repo_id: str, repo_type: str = "dataset", revision: str = "main") -> dict[str, bytes]:
        repo = self.state.repo(repo_type, repo_id)
        commit = self.state.revision(repo, revision)
        return {path: self.state.get_object(e.sha256) for path, e in commit.files.items()}

    def commits(self, repo_id: str, repo_type: str = "dataset") -> list[HubCommit]:
        """Oldest first; the first one is the repo's initial commit (holding .gitattributes)."""
        return list(self.state.repo(repo_type, repo_id).commits)

    def has_repo(self, repo_id: str, repo_type: str = "dataset") -> bool:
        try:
            self.state.repo(repo_type, repo_id)
        except HubError:
            return False
        return True

    def seed_repo(self, repo_id: str, files: Mapping[str, bytes], *, private: bool = False,
                  repo_type: str = "dataset", message: str = "seed") -> HubCommit:
        """Create (if needed) a repo and commit `files` directly, as a fixture for download tests."""
        if not self.has_repo(repo_id, repo_type):
            self.state.create_repo(repo_type, repo_id, private)
        repo = self.state.repo(repo_type, repo_id)
        ops: list[tuple[str, Mapping[str, Any]]] = []
        for path, data in files.items():
            if is_lfs_path(path, data[:512], len(data)):
                ops.append(("lfsFile", {"path": path, "oid": self.state.put_object(data)}))
            else:
                ops.append(("file", {"path": path, "content": base64.b64encode(data).decode()}))
        return self.state.commit(repo, "main", {"summary": message}, ops)


def is_lfs_path(path: str, sample: bytes, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD or b"\0" in sample


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: Callable[..., BaseHTTPRequestHandler], hub: HubServer):
        super().__init__(address, handler)
        self.hub = hub
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def running_hub(token: str = "hf_test_token", tmp_path: Path | None = None, *, user: str = "tester",
                conflict_status: int = 412) -> Iterator[HubServer]:
    """Start a HubServer on 127.0.0.1 (free port); LFS objects go to `tmp_path/hub-objects` if given."""
    server = HubServer(token=token, user=user, conflict_status=conflict_status,
                       objects_dir=tmp_path / "hub-objects" if tmp_path is not None else None).start()
    try:
        yield server
    finally:
        server.stop()


def parse_form_or_json(body: bytes, content_type: str) -> dict[str, Any]:
    if "json" in content_type:
        return dict(json.loads(body or b"{}"))
    return {k: v for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}


def split_path(raw: str) -> tuple[list[str], dict[str, list[str]]]:
    parts = urlsplit(raw)
    return [unquote(s) for s in parts.path.split("/") if s], parse_qs(parts.query)


@dataclass(frozen=True)
class _Req:
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


def _route(method: str, segs: list[str]) -> tuple[str, str, dict[str, str]]:
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK cost ~40 ms a request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.debug("hubserver: " + format, *args)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # plumbing
    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        segs, query = split_path(self.path)
        endpoint, handler, params = _route(method, segs)
        try:
            body = self._read_body()
            kind = hub.draw_fault(endpoint)
            if kind == "drop":
                self.close_connection = True
                return
            if kind is not None and kind != "drop_after":
                self._send(self._fault(kind), method == "HEAD")
                return
            req = _Req(method, query, body, self.headers.get("Content-Type", ""), **params)
            try:
                resp = getattr(self, f"_h_{handler}")(req)
            except HubError as e:
                resp = self._error(e)
            except Exception as e:  # a server bug must become a 500 the test can see, not a hung client
                log.exception("hubserver: %s %s failed", method, self.path)
                resp = self._error(HubError(500, f"hubserver bug: {type(e).__name__}: {e}"))
            if kind == "drop_after":
                self.close_connection = True
                return
            self._send(resp, method == "HEAD")
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True

    def _send(self, resp: _Response, head: bool) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        length = resp.head_length if head and resp.head_length is not None else len(resp.body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not head:
            self.wfile.write(resp.body)

    def _fault(self, kind: str) -> _Response:
        headers = {"X-Error-Message": f"injected fault {kind}"}
        if kind == "429":
            headers["Retry-After"] = str(self.server.hub.retry_after)
        message = "Another operation is in progress on this repo (injected)" if kind == "409" else f"injected {kind}"
        return _json({"error": message}, int(kind), headers)

    @staticmethod
    def _error(e: HubError) -> _Response:
        headers = {"X-Error-Message": e.message.replace("\n", " "), **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        return _json({"error": e.message, **e.body}, e.status, headers)

    # auth
    def _authenticated(self) -> bool:
        hub = self.server.hub
        auth = self.headers.get("Authorization")
        invalid = HubError(401, "Invalid credentials in Authorization header")
        if hub.revoked:
            raise invalid
        if auth is None:
            return False
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or token != hub.token:
            raise invalid
        return True

    def _require_write(self) -> None:
        if not self._authenticated():
            raise HubError(401, "You must be authenticated to write to the Hub (send Authorization: Bearer <token>)")

    def _readable_repo(self, req: _Req) -> _Repo:
        authenticated = self._authenticated()
        repo = self.server.hub.state.repo(req.repo_type, req.repo_id)
        if repo.private and not authenticated:
            # The Hub hides private repos from anonymous callers behind the same answer as a missing one.
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _writable_repo(self, req: _Req) -> _Repo:
        self._require_write()
        return self.server.hub.state.repo(req.repo_type, req.repo_id)

    # endpoints
    def _h_unknown(self, req: _Req) -> _Response:
        raise HubError(404, f"hubserver does not implement {req.method} {self.path}")

    def _h_whoami(self, req: _Req) -> _Response:
        if not self._authenticated():
            raise HubError(401, "Invalid credentials in Authorization header")
        hub = self.server.hub
        return _json({"type": "user", "id": "0" * 24, "name": hub.user, "fullname": hub.user, "orgs": [],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}})

    def _h_agent_harnesses(self, req: _Req) -> _Response:
        return _json({"standardEnvVars": [], "harnesses": {}})

    def _h_validate_yaml(self, req: _Req) -> _Response:
        return _json({"errors": [], "warnings": []})

    def _h_create_repo(self, req: _Req) -> _Response:
        self._require_write()
        payload = json.loads(req.body or b"{}")
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or self.server.hub.user}/{payload['name']}"
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        url = f"{self.server.hub.endpoint}/{URL_PREFIX[repo_type]}{repo_id}"
        self.server.hub.state.create_repo(repo_type, repo_id, private, url)
        return _json({"url": url, "name": repo_id})

    def _h_delete_repo(self, req: _Req) -> _Response:
        self._require_write()
        payload = json.loads(req.body or b"{}")
        repo_id = f"{payload.get('organization') or self.server.hub.user}/{payload['name']}"
        self.server.hub.state.delete_repo(payload.get("type") or "model", repo_id)
        return _json({})

    def _h_repo_info(self, req: _Req) -> _Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        siblings = [{"rfilename": p, "size": e.size, "blobId": e.git_oid,
                     **({"lfs": {"size": e.size, "sha256": e.sha256, "pointerSize": len(e.pointer)}} if e.lfs else {})}
                    for p, e in sorted(commit.files.items())]
        return _json({"_id": repo.commits[0].oid[:24], "id": repo.repo_id, "author": repo.repo_id.split("/")[0],
                      "sha": commit.oid, "lastModified": commit.date, "createdAt": repo.commits[0].date,
                      "private": repo.private, "gated": False, "disabled": False, "downloads": 0, "likes": 0,
                      "tags": [], "siblings": siblings, "usedStorage": sum(e.size for e in commit.files.values())})

    def _tree_entry(self, repo: _Repo, commit: HubCommit, path: str, expand: bool) -> dict[str, Any]:
        entry = commit.files.get(path)
        if entry is not None:
            out: dict[str, Any] = {"type": "file", "oid": entry.git_oid, "size": entry.size, "path": path}
            if entry.lfs:
                out["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": len(entry.pointer)}
        else:
            under = sorted((p, e.git_oid) for p, e in commit.files.items() if p.startswith(path + "/"))
            out = {"type": "directory", "oid": hashlib.sha1(json.dumps([path, under]).encode()).hexdigest(), "size": 0,
                   "path": path}
        if expand:
            last = self.server.hub.state.last_commit_touching(repo, commit, path)
            out["lastCommit"] = {"id": last.oid, "title": last.title, "date": last.date}
        return out

    def _h_tree(self, req: _Req) -> _Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        path = req.path.strip("/")
        prefix = f"{path}/" if path else ""
        if path and not any(p.startswith(prefix) for p in commit.files):
            raise HubError(404, f"{path} does not exist on {req.rev}", "EntryNotFound",
                           {"X-Repo-Commit": commit.oid})
        recursive = req.flag("recursive")
        dirs: set[str] = set()
        files: list[str] = []
        for p in sorted(commit.files):
            if not p.startswith(prefix):
                continue
            parts = p[len(prefix):].split("/")
            if len(parts) == 1 or recursive:
                files.append(p)
            dirs.update(prefix + "/".join(parts[:i]) for i in range(1, len(parts) if recursive else min(2, len(parts))))
        entries = [self._tree_entry(repo, commit, p, req.flag("expand")) for p in [*sorted(dirs), *files]]
        return _json(entries)

    def _h_paths_info(self, req: _Req) -> _Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        form = parse_form_or_json(req.body, req.content_type)
        paths = form.get("paths", [])
        expand_raw = form.get("expand", False)
        expand = expand_raw if isinstance(expand_raw, bool) else str(expand_raw[-1]).lower() == "true"
        out = []
        for raw in [paths] if isinstance(paths, str) else paths:
            path = raw.strip("/")
            if path in commit.files or any(p.startswith(path + "/") for p in commit.files):
                out.append(self._tree_entry(repo, commit, path, expand))
        return _json(out)

    def _h_commits(self, req: _Req) -> _Response:
        repo = self._readable_repo(req)
        commit = self.server.hub.state.revision(repo, req.rev)
        history = repo.commits[: repo.commits.index(commit) + 1]
        return _json([{"id": c.oid, "title": c.title, "message": c.message, "date": c.date,
                       "authors": [{"user": self.server.hub.user}]} for c in reversed(history)])

    def _h_refs(self, req: _Req) -> _Response:
        repo = self._readable_repo(req)
        main = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.head.oid}
        return _json({"branches": [main], "converts": [], "tags": [], "pullRequests": []})

    def _h_preupload(self, req: _Req) -> _Response:
        repo = self._writable_repo(req)
        head = self.server.hub.state.revision(repo, req.rev)
        out = []
        for f in json.loads(req.body)["files"]:
            lfs = is_lfs_path(f["path"], base64.b64decode(f.get("sample", "")), int(f["size"]))
            existing = head.files.get(f["path"])
            oid = None if existing is None else existing.sha256 if existing.lfs else existing.git_oid
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})
        return _json({"files": out, "commitOid": head.oid})

    def _h_lfs_batch(self, req: _Req) -> _Response:
        repo = self._writable_repo(req)
        payload = json.loads(req.body)
        if payload.get("operation") != "upload":
            raise HubError(400, "hubserver only implements LFS batch uploads")
        state, endpoint = self.server.hub.state, self.server.hub.endpoint
        objects = []
        for obj in payload["objects"]:
            oid, size = str(obj["oid"]), int(obj["size"])
            if state.has_object(oid):
                stored = len(state.get_object(oid))
                objects.append({"oid": oid, "size": size} if stored == size else
                               {"oid": oid, "size": size, "error": {"code": 422, "message": "size mismatch"}})
                continue
            state.announce(oid, size)
            verify = f"{endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects/verify"
            objects.append({"oid": oid, "size": size, "authenticated": True,
                            "actions": {"upload": {"href": f"{endpoint}/lfs-upload/{oid}"}, "verify": {"href": verify}}})
        resp = _json({"transfer": "basic", "objects": objects})
        resp.content_type = "application/vnd.git-lfs+json"
        return resp

    def _h_lfs_upload(self, req: _Req) -> _Response:
        state, oid = self.server.hub.state, req.path
        size = state.announced_size(oid)
        if size is None:
            raise HubError(403, f"upload of {oid} was not announced through the LFS batch API")
        if len(req.body) != size or hashlib.sha256(req.body).hexdigest() != oid:
            raise HubError(400, f"uploaded bytes do not match oid {oid} / size {size}")
        state.put_object(req.body)
        return _Response(200, b"", {"ETag": f'"{oid}"'})

    def _h_lfs_verify(self, req: _Req) -> _Response:
        self._writable_repo(req)
        payload, state = json.loads(req.body), self.server.hub.state
        if not state.has_object(payload["oid"]) or len(state.get_object(payload["oid"])) != int(payload["size"]):
            raise HubError(404, f"LFS object {payload['oid']} not found")
        return _json({"success": True})

    def _h_commit(self, req: _Req) -> _Response:
        repo = self._writable_repo(req)
        if req.flag("create_pr"):
            raise HubError(400, "hubserver does not implement pull requests")
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        header: dict[str, Any] = next((item["value"] for item in lines if item["key"] == "header"), {})
        ops = [(item["key"], item["value"]) for item in lines if item["key"] != "header"]
        commit = self.server.hub.state.commit(repo, req.rev, header, ops)
        url = f"{self.server.hub.endpoint}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return _json({"success": True, "commitOid": commit.oid, "commitUrl": url, "commitMessage": commit.title,
                      "hookOutput": "", "pullRequestUrl": None})

    def _h_resolve(self, req: _Req) -> _Response:
        repo = self._readable_repo(req)
        state = self.server.hub.state
        commit = state.revision(repo, req.rev)
        entry = commit.files.get(req.path)
        if entry is None:
            raise HubError(404, f"Entry not found: {req.path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        data = state.get_object(entry.sha256)
        headers = {"X-Repo-Commit": commit.oid, "Accept-Ranges": "bytes",
                   "ETag": f'"{entry.sha256 if entry.lfs else entry.git_oid}"'}
        if entry.lfs:
            headers |= {"X-Linked-Etag": f'"{entry.sha256}"', "X-Linked-Size": str(entry.size)}
        rng = self.headers.get("Range")
        if rng is None:
            return _Response(200, data, headers, "application/octet-stream", head_length=len(data))
        start, end = _parse_range(rng, len(data))
        if start >= len(data) or start > end:
            raise HubError(416, f"Range {rng} not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return _Response(206, data[start:end + 1], headers, "application/octet-stream", head_length=end + 1 - start)


def _parse_range(header: str, total: int) -> tuple[int, int]:
    """Inclusive (start, end) of a single `bytes=` range, clamped to the file."""
    unit, _, spec = header.partition("=")
    first = spec.split(",")[0].strip()
    lo, _, hi = first.partition("-")
    if unit.strip() != "bytes" or (not lo and not hi):
        raise HubError(416, f"unsupported Range {header}", headers={"Content-Range": f"bytes */{total}"})
    if not lo:
        return max(total - int(hi), 0), total - 1
    return int(lo), min(int(hi), total - 1) if hi else total - 1
