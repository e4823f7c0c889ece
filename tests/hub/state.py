"""The test Hub's repos, commits and stored objects, independent of HTTP.

Repos are linear commit lists on `main`, each commit a full snapshot of path -> FileEntry, so any
revision can be listed or downloaded without replaying history. Object bytes are keyed by sha256
(regular files too), in memory or under `objects_dir` when a test wants large files off the heap.
Errors are `HubError`s shaped like the Hub's answers, so the HTTP layer only has to serialise them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

# Same spirit as the Hub's default .gitattributes: binary data goes to LFS, small text stays in git.
LFS_SUFFIXES = (".parquet", ".arrow", ".png", ".webp", ".jpg", ".jpeg", ".gif", ".bmp", ".tiff", ".npy", ".npz",
                ".zarr", ".zip", ".gz", ".zst", ".tar", ".bin", ".pt", ".safetensors", ".h5", ".mp4", ".wav")
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{s} filter=lfs diff=lfs merge=lfs -text\n" for s in LFS_SUFFIXES).encode()


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
class Repo:
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


class HubState:
    """Repos, commits and stored objects; every method is thread-safe."""

    def __init__(self, user: str, objects_dir: Path | None, conflict_status: int):
        self.user = user
        self.conflict_status = conflict_status
        self._lock = threading.RLock()
        self._repos: dict[tuple[str, str], Repo] = {}
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
    def create_repo(self, repo_type: str, repo_id: str, private: bool, url: str = "") -> Repo:
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                # huggingface_hub reads "url" from this 409 body when exist_ok=True.
                raise HubError(409, f"You already created this {repo_type} repo", body={"url": url})
            repo = Repo(repo_type, repo_id, private)
            self.put_object(GITATTRIBUTES)
            files = {".gitattributes": _regular_entry(GITATTRIBUTES)}
            repo.commits.append(HubCommit(secrets.token_hex(20), "initial commit", "", _now(), MappingProxyType(files)))
            self._repos[(repo_type, repo_id)] = repo
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self._lock:
            if self._repos.pop((repo_type, repo_id), None) is None:
                raise HubError(404, "Repository not found", "RepoNotFound")

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        with self._lock:
            repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def revision(self, repo: Repo, rev: str) -> HubCommit:
        with self._lock:
            if rev in ("main", "refs/heads/main"):
                return repo.head
            for commit in repo.commits:
                if commit.oid == rev:
                    return commit
        raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")

    def commit(self, repo: Repo, rev: str, header: Mapping[str, Any], ops: list[tuple[str, Mapping[str, Any]]]) -> HubCommit:
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

    def last_commit_touching(self, repo: Repo, upto: HubCommit, path: str) -> HubCommit:
        """The newest commit (not after `upto`) that changed `path` or anything under it."""
        def view(c: HubCommit) -> dict[str, str]:
            return {p: e.git_oid for p, e in c.files.items() if path == "" or p == path or p.startswith(path + "/")}

        with self._lock:
            history = repo.commits[: repo.commits.index(upto) + 1]
        for newer, older in zip(reversed(history), list(reversed(history))[1:], strict=False):
            if view(newer) != view(older):
                return newer
        return history[0]


def is_lfs_path(path: str, sample: bytes, size: int) -> bool:
    return path.lower().endswith(LFS_SUFFIXES) or size > LFS_SIZE_THRESHOLD or b"\0" in sample
