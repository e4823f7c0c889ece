"""The HTTP side of the test Hub: a threading server that can drop its idle connections, and the
request plumbing (body reading, fault injection, dispatch, error answers, auth) under the endpoints.

`HubRequestHandler` dispatches each request to a `_h_<handler>` method named by `wire.route`; the
Hub API itself (those methods) lives in `tests.hub.endpoints`, which subclasses it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from .faults import fault_response
from .state import HubError, Repo
from .wire import Request, Response, json_response, route, split_path

if TYPE_CHECKING:
    from .server import HubServer

log = logging.getLogger(__name__)


class HubHTTPServer(ThreadingHTTPServer):
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


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 60
    server: HubHTTPServer

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
        endpoint, handler, params = route(method, segs)
        try:
            body = self._read_body()
            kind = hub.draw_fault(endpoint)
            if kind in ("drop", "hang"):
                if kind == "hang":
                    hub.hang()
                self.close_connection = True
                return
            if kind is not None and kind != "drop_after":
                self._send(fault_response(kind, hub.retry_after), method == "HEAD")
                return
            req = Request(method, query, body, self.headers.get("Content-Type", ""), **params)
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

    def _send(self, resp: Response, head: bool) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        for key, value in resp.headers.items():
            self.send_header(key, value)
        length = resp.head_length if head and resp.head_length is not None else len(resp.body)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if not head:
            self.wfile.write(resp.body)

    @staticmethod
    def _error(e: HubError) -> Response:
        headers = {"X-Error-Message": e.message.replace("\n", " "), **e.headers}
        if e.code:
            headers["X-Error-Code"] = e.code
        return json_response({"error": e.message, **e.body}, e.status, headers)

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

    def _readable_repo(self, req: Request) -> Repo:
        authenticated = self._authenticated()
        repo = self.server.hub.state.repo(req.repo_type, req.repo_id)
        if repo.private and not authenticated:
            # The Hub hides private repos from anonymous callers behind the same answer as a missing one.
            raise HubError(401, "Repository not found", "RepoNotFound")
        return repo

    def _writable_repo(self, req: Request) -> Repo:
        self._require_write()
        return self.server.hub.state.repo(req.repo_type, req.repo_id)
