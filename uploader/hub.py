"""Pushing converted episodes to a Hub dataset repo, exactly once, with retries.

One episode is one ``create_commit`` holding its parquet, final image, metadata and the regenerated
card, made with ``parent_commit=<head>``. Before each attempt the head is re-read: if the episode's
``meta/episodes/<id>.json`` is already there (an earlier attempt whose response was lost, or a racing
uploader), nothing is committed. A commit that lost a race (the head moved) fails with a conflict and
is retried on the new head, so the card always counts every episode exactly once.

Every huggingface_hub / HTTP failure is translated into ``shared.errors`` by ``uploader.hub_errors``.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gymrec.shared import layout
from gymrec.shared.errors import CommitConflictError, EntryNotFoundError, HubError, HubUnavailableError
from gymrec.uploader import card
from gymrec.uploader.convert import Converted
from gymrec.uploader.hub_errors import hub_call
from huggingface_hub import CommitOperationAdd, HfApi

log = logging.getLogger(__name__)
T = TypeVar("T")
REPO_TYPE = "dataset"


def is_transient(e: BaseException) -> bool:
    return isinstance(e, HubError) and e.transient


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 30.0
    max_conflicts: int = 50


@dataclass(frozen=True)
class Receipt:
    repo: str
    commit: str | None
    paths: list[str]
    already_present: bool = False
    local_dir: str | None = None
    uploaded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class HubPusher:
    """Pushes episodes for one token and endpoint; remembers immutable metadata it has read."""

    def __init__(self, endpoint: str | None, token: str, private: bool, retry: RetryPolicy, stop: threading.Event) -> None:
        self._api = HfApi(endpoint=endpoint, token=token, library_name="gymrec")
        self._endpoint = endpoint
        self._private = private
        self._retry = retry
        self._stop = stop
        self._repos: set[str] = set()
        self._metas: dict[tuple[str, str], dict[str, Any]] = {}
        self._user: str | None = None

    def whoami(self) -> str:
        if self._user is None:
            info = self._retrying("the account check", lambda: self._api.whoami())
            self._user = str(info["name"])
        return self._user

    def _retrying(self, repo_id: str, action: Callable[[], T]) -> T:
        """``action`` with bounded exponential backoff and jitter on transient failures."""
        attempt = 0
        while True:
            try:
                with hub_call(repo_id, self._endpoint):
                    return action()
            except HubUnavailableError as e:
                attempt += 1
                if not is_transient(e) or attempt >= self._retry.attempts:
                    raise
                delay = min(self._retry.max_delay, self._retry.base_delay * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
                delay = max(delay, e.retry_after or 0.0)
                log.warning("%s; retry %d/%d in %.1fs", e, attempt, self._retry.attempts - 1, delay)
                if self._stop.wait(delay):
                    raise HubUnavailableError(f"stopped while retrying {repo_id}", "the episode stays queued") from e

    def ensure_repo(self, repo_id: str) -> None:
        if repo_id not in self._repos:
            self._retrying(repo_id, lambda: self._api.create_repo(repo_id, repo_type=REPO_TYPE, private=self._private, exist_ok=True))
            self._repos.add(repo_id)

    def _list(self, repo_id: str, folder: str, head: str) -> list[str]:
        try:
            with hub_call(repo_id, self._endpoint):
                entries = self._api.list_repo_tree(repo_id, path_in_repo=folder, revision=head, repo_type=REPO_TYPE)
                return [entry.path for entry in entries]
        except EntryNotFoundError:
            return []  # the folder does not exist yet

    def _meta(self, repo_id: str, path: str, head: str) -> dict[str, Any]:
        key = (repo_id, path)
        if key not in self._metas:
            with hub_call(repo_id, self._endpoint):
                local = self._api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=head)
            with open(local, encoding="utf-8") as f:
                self._metas[key] = json.load(f)
        return self._metas[key]

    def _attempt(self, converted: Converted, repo_id: str) -> Receipt:
        """One try on the current head; CommitConflictError when the head moved meanwhile."""
        with hub_call(repo_id, self._endpoint):
            head = str(self._api.repo_info(repo_id, repo_type=REPO_TYPE).sha)
        meta_paths = self._list(repo_id, layout.EPISODES_DIR, head)
        if converted.meta_file in meta_paths:
            log.info("%s is already in %s at %s", converted.episode_id, repo_id, head[:8])
            return Receipt(repo_id, head, converted.episode_files, already_present=True)
        with ThreadPoolExecutor(8, thread_name_prefix="gymrec-meta") as pool:
            metas = list(pool.map(lambda p: self._meta(repo_id, p, head), meta_paths))
        readme = card.render([*metas, converted.meta], repo_id).encode()
        paths = list(converted.episode_files)
        if converted.preview_file not in self._list(repo_id, layout.PREVIEW_DIR, head):
            paths.append(converted.preview_file)
        operations = [CommitOperationAdd(path, str(converted.root / path)) for path in paths]
        operations.append(CommitOperationAdd(layout.CARD_PATH, readme))
        with hub_call(repo_id, self._endpoint):
            info = self._api.create_commit(
                repo_id,
                operations,
                commit_message=f"Add episode {converted.episode_id} ({converted.env_id}, {converted.meta['length']} steps)",
                repo_type=REPO_TYPE,
                parent_commit=head,
            )
        log.info("committed %s to %s as %s", converted.episode_id, repo_id, info.oid[:8])
        return Receipt(repo_id, info.oid, converted.episode_files)

    def push(self, converted: Converted, repo_id: str) -> Receipt:
        """Make the episode visible in ``repo_id`` exactly once; raises AuthError / HubUnavailableError."""
        self.ensure_repo(repo_id)
        for _ in range(self._retry.max_conflicts):
            try:
                return self._retrying(repo_id, lambda: self._attempt(converted, repo_id))
            except CommitConflictError as e:
                log.info("%s; re-reading the head", e)
                if self._stop.wait(random.uniform(0.0, 0.2)):
                    break
        raise HubUnavailableError(f"{repo_id} kept changing under every commit", "the episode stays queued")
