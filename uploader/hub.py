"""Pushing upload batches to a Hub dataset repo, exactly once, with retries.

One batch is one ``create_commit`` holding its data and index shards (one of each per config), a
preview for each new config, ``meta/info.json`` merged with the batch and the card rendered from it,
made with ``parent_commit=<head>``. An attempt costs the head, info.json at the head, one listing of
the index folder plus the index shards not read before (``uploader.published``: an episode id already
listed is not published again, whoever published it), the upload and the commit. A commit that lost
a race (the head moved) fails with a conflict and is retried on the new head, so info.json and the
card count every episode exactly once.

Every huggingface_hub / HTTP failure is translated into ``shared.errors`` by ``shared.hub.client``.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pyarrow.parquet as pq
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi

from gymrec.shared.dataset import layout
from gymrec.shared.errors import (
    AlreadyPublishedError,
    CommitConflictError,
    DatasetError,
    EntryNotFoundError,
    HubError,
    HubUnavailableError,
    RepoNotFoundError,
)
from gymrec.shared.hub.client import hub_call, offline_mode
from gymrec.uploader import card, compact, info, ownership, published, reformat, withdraw
from gymrec.uploader.convert import ConvertOptions
from gymrec.uploader.shards import Batch

log = logging.getLogger(__name__)
T = TypeVar("T")
REPO_TYPE = "dataset"
REFORMAT_PER_COMMIT = 15  # shards converted a commit: 5 files each, under the Hub's 100 files a commit


def is_transient(e: BaseException) -> bool:
    return isinstance(e, HubError) and e.transient


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for one call's transient failures, and for the probes while the Hub is down.

    ``budget`` bounds one call's retries in time as ``attempts`` does in count (the CLI's ``--timeout``):
    a Hub that gave no usable answer for that long is down, and the uploader says so once
    (``uploader.outage``) instead of paying the whole backoff again for every queued episode.
    """

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0
    max_conflicts: int = 50
    budget: float = 60.0

    def delay(self, attempt: int) -> float:
        """The wait before retry ``attempt`` (1, 2, ...): doubling from ``base_delay``, capped, jittered."""
        return min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 60)) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Receipt:
    repo: str
    commit: str | None
    paths: list[str]
    batch_id: str = ""
    already_present: bool = False
    local_dir: str | None = None
    uploaded_at: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class HubPusher:
    """Pushes batches for one token and endpoint. ``abort`` cuts retry waits short."""

    def __init__(self, endpoint: str | None, token: str, private: bool, retry: RetryPolicy, abort: threading.Event,
                 force_adopt: bool = False) -> None:
        self._api = HfApi(endpoint=endpoint, token=token, library_name="gymrec")
        self._force_adopt = force_adopt
        self.skipped: list[str] = []  # compaction's unreadable shards, "path (why)"
        self._adopting: set[str] = set()
        self._endpoint = endpoint
        self._private = private
        self._retry = retry
        self._abort = abort
        self._repos: set[str] = set()
        self._user: str | None = None
        self._down: HubUnavailableError | None = None  # why the Hub counts as down, until a probe answers
        self._index: dict[str, published.IndexCache] = {}  # per repo: the index shards read so far

    @property
    def endpoint(self) -> str:
        return self._endpoint or "https://huggingface.co"

    @property
    def down(self) -> HubUnavailableError | None:
        """The transient failure after which the Hub counts as down (None: it answers)."""
        return self._down

    def whoami(self) -> str:
        if self._user is None:
            whoami = self._retrying("the account check", lambda: self._api.whoami())
            self._user = str(whoami["name"])
        return self._user

    def check_account(self) -> None:
        """The start-up check: a refused token raises; a Hub that is down is only marked down (and waited out)."""
        try:
            self.whoami()
        except HubUnavailableError:
            if self._down is None:  # a refusal, not an outage
                raise

    def probe(self) -> None:
        """One request, no retries: does the Hub answer again? Clears ``down`` when it does.

        A transient failure leaves it down (HubUnavailableError); a refused token raises AuthError.
        """
        with hub_call("the account check", self._endpoint):
            whoami = self._api.whoami()
        self._user = str(whoami["name"])
        self._down = None

    def _retrying(self, what: str, action: Callable[[], T]) -> T:
        """``action`` with bounded exponential backoff and jitter on transient failures.

        Giving up on a transient failure marks the Hub down; while it is down every call fails at
        once, without a request, so the queue behind it costs nothing until a ``probe`` answers.
        """
        if self._down is not None:
            raise type(self._down)(self._down.message, self._down.hint) from self._down
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                with hub_call(what, self._endpoint):
                    return action()
            except HubUnavailableError as e:
                attempt += 1
                if not is_transient(e):
                    raise
                delay = max(self._retry.delay(attempt), e.retry_after or 0.0)
                spent = time.monotonic() - started + delay
                if attempt >= self._retry.attempts or spent > self._retry.budget or offline_mode(e):
                    self._down = e
                    raise
                log.info("%s; retry %d/%d in %.1fs", e, attempt, self._retry.attempts - 1, delay)
                if self._abort.wait(delay):
                    raise HubUnavailableError(f"stopped while retrying {what}", "the episodes stay queued") from e

    def check_repo(self, repo_id: str) -> None:
        """At start-up: a --repo-id that holds someone else's files is refused before anything is
        claimed (``uploader.ownership``); a repo that does not exist yet is fine."""
        def ask() -> None:
            try:
                head = self.head(repo_id)
            except RepoNotFoundError:
                return
            self._info_at(repo_id, head)

        self._retrying(repo_id, ask)

    def ensure_repo(self, repo_id: str) -> None:
        if repo_id not in self._repos:
            self._retrying(repo_id, lambda: self._api.create_repo(repo_id, repo_type=REPO_TYPE, private=self._private, exist_ok=True))
            self._repos.add(repo_id)

    def head(self, repo_id: str) -> str:
        with hub_call(repo_id, self._endpoint):
            return str(self._api.repo_info(repo_id, repo_type=REPO_TYPE).sha)

    def present(self, repo_id: str, paths: list[str], head: str) -> bool:
        """Are all of ``paths`` in the repo at ``head``? One request, whatever the repo holds."""
        with hub_call(repo_id, self._endpoint):
            found = self._api.get_paths_info(repo_id, paths, revision=head, repo_type=REPO_TYPE)
        return {entry.path for entry in found} >= set(paths)

    def batch_landed(self, repo_id: str, paths: list[str]) -> str | None:
        """The head commit when a batch's shards are there (crash recovery asks this), else None."""
        self.ensure_repo(repo_id)

        def ask() -> str | None:
            head = self.head(repo_id)
            return head if self.present(repo_id, paths, head) else None

        return self._retrying(repo_id, ask)

    def _download(self, repo_id: str, path: str, head: str) -> Path:
        with hub_call(f"{repo_id}:{path}", self._endpoint):
            return Path(self._api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=head))

    def _info_at(self, repo_id: str, head: str, writing: bool = True) -> dict[str, Any] | None:
        """info.json at ``head``; None for an empty repo. A gymrec repo that lost it gets it rebuilt
        from its shards, someone else's is refused or adopted (``uploader.ownership``)."""
        try:
            found: dict[str, Any] | None = layout.parse_info(self._download(repo_id, layout.INFO_PATH, head).read_bytes(), repo_id)
        except (EntryNotFoundError, DatasetError):  # missing or damaged: what else is there decides
            found = None
        if found is not None and "format_version" in found:
            info.check(found, repo_id, writing=writing)  # another gymrec format: refused, not adopted
        if found is not None and ownership.is_gymrec_info(found):
            return found
        v1 = self._has_v1_files(repo_id, head)
        info.check(None, repo_id, v1)
        with hub_call(repo_id, self._endpoint):  # only when info.json is missing: one listing
            files = self._api.list_repo_files(repo_id, revision=head, repo_type=REPO_TYPE)
        state = ownership.state_without_info(files)
        if state == ownership.EMPTY:
            return None
        if state == ownership.LOST_INFO:
            return ownership.rebuild(files, lambda path: self._download(repo_id, path, head).read_bytes(),
                                     lambda path: pq.read_schema(self._download(repo_id, path, head)))  # fmt: skip
        if not self._force_adopt:
            raise ownership.refuse_foreign(f"the Hub repo {repo_id}", "--repo-id")
        if repo_id not in self._adopting:  # said once a run, not once a commit
            self._adopting.add(repo_id)
            log.warning("adopting %s (--force-adopt): its files stay as they are", repo_id)
        return ownership.adopted(files)

    def _has_v1_files(self, repo_id: str, head: str) -> bool:
        """Only asked when info.json is missing (a new repo): is this the old per-episode layout?"""
        try:
            with hub_call(repo_id, self._endpoint):
                entries = self._api.list_repo_tree(repo_id, path_in_repo=layout.INDEX_DIR, revision=head, repo_type=REPO_TYPE)
                return any(layout.is_v1_meta_path(entry.path) for entry in entries)
        except EntryNotFoundError:
            return False

    def listed(self, repo_id: str, head: str) -> dict[str, list[published.Listed]]:
        """Every episode id the repo's index lists at ``head``: one tree listing, plus the index shards
        not read before (a shard path never changes content)."""
        paths = [path for path, _size in self._tree(repo_id, head, (layout.INDEX_DIR,)).items()]

        def read(path: str) -> bytes:
            with hub_call(f"{repo_id}:{path}", self._endpoint):
                return Path(self._api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=head)).read_bytes()

        return self._index.setdefault(repo_id, published.IndexCache()).listed(paths, read)

    def _attempt(self, batch: Batch, repo_id: str) -> Receipt:
        """One try on the current head; CommitConflictError when the head moved meanwhile."""
        head = self.head(repo_id)
        current = self._info_at(repo_id, head)
        # Exactly once per episode id, checked at the very head this commit is parented on, so a racing
        # uploader cannot slip in between; this also covers an earlier attempt whose answer was lost.
        verdict = published.judge(batch.fingerprints, self.listed(repo_id, head), repo_id)
        if verdict.found:
            raise AlreadyPublishedError(verdict.same, verdict.clash)
        merged = info.merge(current, batch)
        operations = [CommitOperationAdd(path, str(local)) for path, local in sorted(batch.files.items())]
        operations += [CommitOperationAdd(layout.preview_path(c), batch.parts[c].preview_png) for c in info.new_configs(current, batch)]
        operations.append(CommitOperationAdd(layout.INFO_PATH, info.dumps(merged)))
        if ownership.writes_card(merged):  # an adopted repo's README.md stays its owner's
            operations.append(CommitOperationAdd(layout.CARD_PATH, card.render(merged, card.Target(repo_id, local=False)).encode()))
        steps = sum(p.steps for p in batch.parts.values())
        with hub_call(repo_id, self._endpoint):
            commit = self._api.create_commit(
                repo_id,
                operations,
                commit_message=f"Add {card.plural(len(batch.episode_ids), 'episode')} ({steps} steps), batch {batch.batch_id}",
                repo_type=REPO_TYPE,
                parent_commit=head,
            )
        log.info("committed batch %s (%d episodes) to %s as %s", batch.batch_id[:8], len(batch.episode_ids), repo_id, commit.oid[:8])
        return Receipt(repo_id, commit.oid, batch.shard_paths, batch.batch_id)

    def push(self, batch: Batch, repo_id: str) -> Receipt:
        """Make the batch visible in ``repo_id`` exactly once; raises AuthError / HubUnavailableError."""
        self.ensure_repo(repo_id)
        for _ in range(self._retry.max_conflicts):
            try:
                return self._retrying(repo_id, lambda: self._attempt(batch, repo_id))
            except CommitConflictError as e:
                log.info("%s; re-reading the head", e)
                if self._abort.wait(random.uniform(0.0, 0.2)):
                    break
        raise HubUnavailableError(f"{repo_id} kept changing under every commit", "the episodes stay queued")

    # --- compaction -------------------------------------------------------------------------------

    def _tree_sizes(self, repo_id: str, head: str) -> dict[str, int]:
        return self._tree(repo_id, head, (layout.DATA_DIR, layout.INDEX_DIR, layout.FRAMES_DIR))

    def _tree(self, repo_id: str, head: str, folders: tuple[str, ...]) -> dict[str, int]:
        """path -> size of every file under ``folders`` at ``head`` (a missing folder is empty)."""
        sizes: dict[str, int] = {}
        for folder in folders:
            try:
                with hub_call(repo_id, self._endpoint):
                    for entry in self._api.list_repo_tree(repo_id, folder, recursive=True, revision=head, repo_type=REPO_TYPE):
                        size = getattr(entry, "size", None)
                        if size is not None:
                            sizes[entry.path] = int(size)
            except EntryNotFoundError:
                continue
        return sizes

    def to_format3(self, repo_id: str, root: Path, options: ConvertOptions) -> tuple[int, int, int]:
        """Convert every format-2 shard (``uploader.reformat``), a few per commit, info.json with the last;
        (shards, episodes, frames checked). A rerun after a crash converts what is left."""
        shards = episodes = frames = conflicts = 0
        while conflicts < self._retry.max_conflicts:
            head = self.head(repo_id)
            current = self._info_at(repo_id, head, writing=False)
            if current is None:
                raise DatasetError(f"{repo_id} holds no gymrec dataset (no {layout.INFO_PATH})", "check --repo-id")
            todo = reformat.pending(compact.shards_of(self._tree_sizes(repo_id, head)))
            if not todo and layout.format_of(current) == layout.FORMAT_VERSION:
                return shards, episodes, frames
            chosen = todo[:REFORMAT_PER_COMMIT]  # 3 files added and 2 deleted each: under the Hub's 100 a commit
            local = {path: self._download(repo_id, path, head) for s in chosen for path in s.files}
            done = [reformat.reformat(s, local, root, options) for s in chosen]
            operations: list[CommitOperationAdd | CommitOperationDelete] = []
            for d in done:
                operations += [CommitOperationAdd(path, str(file)) for path, file in sorted(d.merged.files.items())]
                operations += [CommitOperationDelete(path) for path in d.merged.deleted]
            if len(chosen) == len(todo):  # the last shards: the dataset turns format 3 in this very commit
                new_info = reformat.converted_info(current)
                operations.append(CommitOperationAdd(layout.INFO_PATH, info.dumps(new_info)))
                if ownership.writes_card(new_info):
                    operations.append(CommitOperationAdd(layout.CARD_PATH, card.render(new_info, card.Target(repo_id, local=False)).encode()))
            try:
                with hub_call(repo_id, self._endpoint):
                    self._api.create_commit(repo_id, operations, repo_type=REPO_TYPE, parent_commit=head,
                                            commit_message=f"Convert {len(done)} shards to format {layout.FORMAT_VERSION}")  # fmt: skip
            except CommitConflictError as e:
                conflicts += 1
                log.info("%s; planning the conversion again", e)
                continue
            shards, episodes, frames = shards + len(done), episodes + sum(d.episodes for d in done), frames + sum(d.frames for d in done)
        raise HubUnavailableError(f"{repo_id} kept changing under every conversion commit", "run compact --to-format 3 again later")

    def compact_shards(self, repo_id: str, target_bytes: int, root: Path, options: ConvertOptions) -> tuple[int, int]:
        """Merge small shards until none are left to merge; (shards replaced, shards written)."""
        replaced = written = 0
        conflicts = 0
        while conflicts < self._retry.max_conflicts:
            head = self.head(repo_id)
            current = self._info_at(repo_id, head, writing=False)  # a format-2 dataset compacts as format 2
            if current is None:
                raise DatasetError(f"{repo_id} holds no gymrec dataset (no {layout.INFO_PATH})", "check --repo-id")
            together = compact.duplicated_shards(self.listed(repo_id, head))  # merged together: duplicates left out
            groups = compact.plan(compact.shards_of(self._tree_sizes(repo_id, head)), target_bytes, together)
            chosen: list[tuple[compact.Shard, ...]] = []
            operations_count = 0
            for group in groups:  # a commit stays under the Hub's 100 files
                if chosen and operations_count + 3 * len(group) + 3 > 95:
                    break
                chosen.append(group)
                operations_count += 3 * len(group) + 3
            if not chosen:
                return replaced, written
            local: dict[str, Path] = {}
            for group in chosen:
                for shard in group:
                    for path in shard.files:
                        with hub_call(f"{repo_id}:{path}", self._endpoint):
                            local[path] = Path(self._api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=head))
            checked = [compact.usable(group, local) for group in chosen]
            self.skipped = sorted(set(self.skipped) | {why for _, bad in checked for why in bad})
            chosen = [group for group, _ in checked if len(group) > 1]
            if not chosen:
                return replaced, written
            merged = [compact.merge(group, local, root, options) for group in chosen]
            olds = sum(len(m.replaces) for m in merged)
            try:
                self._commit_merged(repo_id, head, current, merged, f"Compact {olds} shards into {len(merged)}")
            except CommitConflictError as e:
                conflicts += 1
                log.info("%s; planning the compaction again", e)
                continue
            replaced, written = replaced + olds, written + len(merged)
        raise HubUnavailableError(f"{repo_id} kept changing under every compaction commit", "run compact again later")

    def _commit_merged(self, repo_id: str, head: str, current: dict[str, Any], merged: list[compact.Merged], message: str,
                       previews: frozenset[str] = frozenset()) -> None:
        """One commit on ``head``: ``merged``'s shards in, those they replace out, info.json and the card
        updated, and the preview of a config left empty deleted (``previews``: those in the repo)."""
        new_info = compact.updated_info(current, merged)
        operations: list[CommitOperationAdd | CommitOperationDelete] = []
        for m in merged:
            operations += [CommitOperationAdd(path, str(file)) for path, file in sorted(m.files.items())]
            operations += [CommitOperationDelete(path) for path in m.deleted]
        operations += [CommitOperationDelete(p) for p in withdraw.emptied_previews(current, new_info) if p in previews]
        operations += [CommitOperationAdd(p, png) for p, png in sorted(withdraw.redrawn_previews(merged).items())]
        operations.append(CommitOperationAdd(layout.INFO_PATH, info.dumps(new_info)))
        if ownership.writes_card(new_info):
            operations.append(CommitOperationAdd(layout.CARD_PATH, card.render(new_info, card.Target(repo_id, local=False)).encode()))
        with hub_call(repo_id, self._endpoint):
            self._api.create_commit(repo_id, operations, repo_type=REPO_TYPE, parent_commit=head, commit_message=message)

    # --- withdrawal ---------------------------------------------------------------------------------

    def withdraw(self, repo_id: str, participant: str, root: Path, options: ConvertOptions) -> int:
        """Remove ``participant``'s episodes from ``repo_id`` (``uploader.withdraw``): one commit on the
        head, re-planned on a conflict; how many were removed (0: none there, or no such repo)."""
        total = 0
        for _ in range(self._retry.max_conflicts):
            try:
                count, done = self._retrying(repo_id, lambda: self._withdraw_once(repo_id, participant, root, options))
            except CommitConflictError as e:
                log.info("%s; planning the withdrawal again", e)
                continue
            except RepoNotFoundError:
                return total
            total += count
            if done:
                return total
        raise HubUnavailableError(f"{repo_id} kept changing under every withdrawal commit", "the withdrawal stays pending")

    def _withdraw_once(self, repo_id: str, participant: str, root: Path, options: ConvertOptions) -> tuple[int, bool]:
        """One commit's worth: (episodes removed, whether that was all of them)."""
        head = self.head(repo_id)
        current = self._info_at(repo_id, head, writing=False)  # a format-2 dataset is withdrawn from too
        tree = self._tree(repo_id, head, (layout.INDEX_DIR, layout.PREVIEW_DIR))
        if current is None:
            return 0, True
        # Downloaded into ``root`` (removed after), not the cache: the withdrawn rows leave no copy here.
        folder = root / f"withdraw-{head[:12]}"

        def fetch(path: str) -> Path:
            with hub_call(f"{repo_id}:{path}", self._endpoint):
                return Path(self._api.hf_hub_download(repo_id, path, repo_type=REPO_TYPE, revision=head, local_dir=folder))

        found = withdraw.affected(tree, lambda path: fetch(path).read_bytes(), participant)
        planned = withdraw.commits(found)
        if not planned:
            return 0, True
        local = {path: fetch(path) for group in planned[0] for s in group for path in s.files}
        merged = [compact.merge(g, local, folder / "new", options, withdraw.leave_out(g, found)) for g in planned[0]]
        count = withdraw.removed(merged)
        self._commit_merged(repo_id, head, current, merged, f"Withdraw a participant: {card.plural(count, 'episode')} removed",
                            frozenset(tree))  # fmt: skip
        return count, len(planned) == 1
