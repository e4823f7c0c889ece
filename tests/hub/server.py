"""`HubServer`, the test Hub a test starts in-process, and `running_hub`, its context manager.

Besides serving HTTP it exposes the Hub's state without HTTP (`files`, `commits`, `seed_repo`), so
tests can arrange fixtures and check outcomes without going through the client under test.
"""

from __future__ import annotations

import base64
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .endpoints import HubHandler
from .faults import FaultInjector, FaultPlan
from .handler import HubHTTPServer
from .state import HubCommit, HubError, HubState, is_lfs_path


class HubServer:
    """The server: start/stop in-process, inspect state, inject faults, read request counts."""

    def __init__(self, token: str = "hf_test_token", user: str = "tester", objects_dir: Path | None = None,
                 conflict_status: int = 412):
        self.token = token
        self.user = user
        self.revoked = False
        self.state = HubState(user, objects_dir, conflict_status)
        self._faults = FaultInjector()
        self._httpd: HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        assert self._httpd is not None, "server not started"
        port = self._httpd.server_address[1]
        return f"http://127.0.0.1:{port}"

    def start(self, port: int = 0) -> HubServer:
        """Serve on ``port`` (0: a free one); a stopped server restarts on its old port with its state kept."""
        self._httpd = HubHTTPServer(("127.0.0.1", port), HubHandler, self)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="gymrec-hubserver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._faults.release()  # a "hang" handler would otherwise hold server_close's join for HANG_S
        self._httpd.shutdown()
        self._httpd.close_connections()  # idle keep-alive handlers would otherwise block server_close's join
        self._httpd.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._httpd = None

    # faults and counts
    @property
    def faults(self) -> FaultPlan | None:
        return self._faults.plan

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        self._faults.plan = plan

    def fail_next(self, endpoint: str, count: int = 1, kind: str = "503") -> None:
        """Make the next `count` requests to `endpoint` fail with `kind` (see FAULT_KINDS)."""
        self._faults.fail_next(endpoint, count, kind)

    def go_down_after(self, endpoint: str, count: int) -> None:
        """Answer `count` more requests to `endpoint`, then drop every request until `come_back` (see FaultInjector)."""
        self._faults.go_down_after(endpoint, count)

    def come_back(self) -> None:
        self._faults.come_back()

    def draw_fault(self, endpoint: str) -> str | None:
        return self._faults.draw(endpoint)

    @property
    def retry_after(self) -> int:
        return self._faults.retry_after

    @property
    def stats(self) -> Counter[str]:
        """Requests received per endpoint name (faulted ones included), e.g. stats["commit"]."""
        return self._faults.stats

    @property
    def injected(self) -> Counter[str]:
        """Faults injected, keyed "endpoint:kind"."""
        return self._faults.injected

    def hang(self) -> None:
        self._faults.hang()

    @property
    def request_log(self) -> list[tuple[float, str, str | None]]:
        """(server time.monotonic(), endpoint, injected fault or None) per request, in arrival order."""
        return self._faults.log

    def reset_stats(self) -> None:
        self._faults.reset_stats()

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
