"""Every error gymrec raises on purpose, in one place.

Each error's ``str()`` is the one line a user sees: what is wrong, then how to fix it. The CLI edge
(``shared.cli.edge``) turns them into that line and a non-zero exit code; nothing below the CLI
prints or exits.

The Hub part of the hierarchy (``transient`` and ``retry_after`` are class attributes, set once by
the constructor, never patched on afterwards)::

    GymrecError
     +-- HubError                      transient=False
     |    +-- AuthError                401, 403, or no token where one is needed
     |    +-- RepoIdError              a malformed repo id (never sent)
     |    +-- RepoNotFoundError        404
     |    +-- EntryNotFoundError       404 EntryNotFound / RevisionNotFound
     |    +-- HubUnavailableError      any other refusal; the episode stays queued
     |         +-- HubServerError      5xx, 408, 425             transient=True
     |         +-- HubUnreachableError no HTTP answer at all      transient=True
     |         +-- RateLimitedError    429                        transient=True, retry_after
     |         +-- CommitConflictError 409, 412: re-read the head and retry
     +-- DatasetError, CredentialsError, ...
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Mapping
from typing import Protocol


class GymrecError(Exception):
    """Base of all expected failures. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


# --- studies (gymrec-serve) ---------------------------------------------------------------------


class StudyError(GymrecError, ValueError):
    """A study file (TOML) is missing, unreadable or does not say what a study needs."""


class ListenError(GymrecError, OSError):
    """gymrec-serve cannot listen on the address and port it was given."""


class ParticipantError(GymrecError, ValueError):
    """A participant id from the URL is missing or not an id (gymrec-serve refuses the page)."""


# --- environments -----------------------------------------------------------------------------


class UnknownEnvError(GymrecError, LookupError):
    """The env id is registered by no backend."""


class MissingRomError(GymrecError, FileNotFoundError):
    """The env exists but its ROM or WAD is not installed."""


class EnvCreationError(GymrecError, RuntimeError):
    """The backend could not build the env (bad kwargs, a broken install, ...)."""


class BadEnvKwargError(GymrecError, ValueError):
    """A ``--env-kwarg`` is not ``KEY=VALUE``."""


# --- input ------------------------------------------------------------------------------------


class KeymapError(GymrecError, ValueError):
    """A keymap file is unreadable or names an unknown key, button or action."""


class BadAgentError(GymrecError, ValueError):
    """``--agent`` is neither a built-in nor an importable ``module:callable``."""


class AgentActionError(GymrecError, ValueError):
    """An agent returned an action outside the env's action space."""


class AgentFailedError(GymrecError, RuntimeError):
    """The agent's own code raised: the agent's error, not gymrec's (the steps before it are kept)."""


class ReplayStoppedError(GymrecError, RuntimeError):
    """``gymrec-replay --render`` was stopped (Esc) before the end: the rest was not verified."""

    exit_code = 4


class DisplayError(GymrecError, RuntimeError):
    """No window could be opened for interactive play."""


# --- spool ------------------------------------------------------------------------------------


class SpoolError(GymrecError, OSError):
    """The spool directory cannot be used (not a directory, unwritable, ...)."""


class DiskFullError(SpoolError):
    """The spool's filesystem ran out of space; what was written so far is kept."""


class CorruptEpisodeError(GymrecError, ValueError):
    """An episode on disk does not match the spool schema."""


class ChunkCorruptError(CorruptEpisodeError):
    """Stored data is damaged: a chunk is missing, fails its checksum or cannot be decoded.

    Distinct from a divergence (the env behaving differently): the recording itself is wrong on
    disk. ``array``, ``chunk`` and ``steps`` ([start, stop) rows of that array) say exactly where.
    """

    exit_code = 5  # 1 diverged, 2 bad input, 3 a gymrec bug, 4 replay stopped early

    def __init__(self, where: str, array: str, chunk: int, steps: tuple[int, int], problem: str) -> None:
        self.where, self.array, self.chunk, self.steps = where, array, chunk, steps
        super().__init__(f"{where}: stored data is corrupt: chunk {chunk} of {array!r} (steps {steps[0]}..{steps[1] - 1}) "
                         f"{problem}", "the episode is damaged; recover it from a copy or re-record it")


class ForeignChunksError(CorruptEpisodeError):
    """An array's chunks are each intact but not the ones its episode sealed (``shared.spool.checksums``
    ``chunks_digest``): one was replaced, e.g. copied from another episode. Stored-data corruption,
    like ``ChunkCorruptError``, and exits the same way."""

    exit_code = 5

    def __init__(self, where: str, array: str) -> None:
        self.where, self.array = where, array
        super().__init__(
            f"{where}: stored data is corrupt: the chunks of {array!r} are not the ones this episode sealed "
            "(one was replaced, e.g. copied from another episode; its own crc32c passes)",
            "the episode is damaged; recover it from a copy or re-record it",
        )


class SchemaVersionError(CorruptEpisodeError):
    """An episode was written with a schema version this gymrec cannot read."""


class EmptyEpisodeError(CorruptEpisodeError):
    """An episode holds no steps."""


class EpisodeNotFoundError(GymrecError, LookupError):
    """No episode matches the id, prefix or path given."""


class AmbiguousEpisodeError(GymrecError, LookupError):
    """An id prefix matches more than one episode."""


class EpisodeBusyError(GymrecError, RuntimeError):
    """Another live process holds the episode (it is still being written or recovered)."""


class StartStateError(GymrecError, RuntimeError):
    """An episode's stored start state cannot be restored here, and its seed is not exact."""


class RecoveryError(GymrecError, RuntimeError):
    """Re-simulating an orphaned episode did not reproduce the chunks already on disk."""


class WithdrawalError(GymrecError, ValueError):
    """A withdrawal cannot be recorded: a participant that is not a hex hash, or a foreign file where its request goes."""


# --- hub / dataset ----------------------------------------------------------------------------
#
# ``hub_error`` below is the one table from an HTTP answer to these classes. The uploader and replay
# translate huggingface_hub's exceptions in one place (``shared.hub.client``) by handing the status code, ``X-Error-Code`` and ``Retry-After`` to it.


class HubError(GymrecError):
    """Any failure talking to the Hub. ``transient``: retrying the same request may succeed."""

    transient: bool = False
    retry_after: float | None = None


class AuthError(HubError, PermissionError):
    """The Hub refused the token (401/403) or no token is available where one is needed."""


class RepoIdError(HubError, ValueError):
    """A repo id is malformed (for example it tries a path traversal)."""


class RepoNotFoundError(HubError, LookupError):
    """The dataset repo does not exist or is not visible with this token."""


class EntryNotFoundError(HubError, LookupError):
    """A file or folder is not in the repo at that revision (404 with ``X-Error-Code: EntryNotFound``)."""


class HubUnavailableError(HubError, ConnectionError):
    """The Hub kept failing after every retry (or refused for good); the episode stays queued."""


class HubServerError(HubUnavailableError):
    """5xx, 408 or 425: the Hub (or a proxy) failed this request; another try may work."""

    transient = True


class HubUnreachableError(HubUnavailableError):
    """No HTTP answer at all: DNS, a refused or dropped connection, a timeout."""

    transient = True


class RateLimitedError(HubUnavailableError):
    """429: too many requests or commits; wait ``retry_after`` seconds (when the Hub says) and retry."""

    transient = True

    def __init__(self, message: str, hint: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, hint)
        self.retry_after = retry_after


class CommitConflictError(HubUnavailableError):
    """409/412: the repo's head moved under a ``parent_commit`` commit; re-read it and try again."""


class DatasetError(GymrecError, ValueError):
    """A local dataset directory is missing or not in gymrec's layout."""


class CorruptShardError(DatasetError):
    """Shards of a dataset that do not read back whole: left as they are, the rest compacted."""

    exit_code = 5  # the corruption code, as for a corrupt episode


class AlreadyPublishedError(DatasetError):
    """Some of a batch's episode ids are already in the target's index (nothing was published).

    ``same``: id -> the index shard listing it with this content (filed as uploaded);
    ``clash``: id -> why it is quarantined (listed there with other content).
    """

    def __init__(self, same: dict[str, str], clash: dict[str, str]) -> None:
        super().__init__(f"{len(same) + len(clash)} episode(s) of the batch are already published",
                         "they are filed as uploaded, or quarantined when their content differs")
        self.same = same
        self.clash = clash


class CredentialsError(GymrecError, ValueError):
    """A token source (``.env``, the login cache) is unreadable or malformed."""


AUTH_HINT = "set HF_TOKEN (or run 'hf auth login') with a token that can access it"
UNAVAILABLE_HINT = "check --endpoint / HF_ENDPOINT and the network; queued episodes stay queued"


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP-date Retry-After: fall back to our own backoff


def hub_error(status: int, what: str, error_code: str | None = None, retry_after: str | None = None) -> HubError:
    """The gymrec error for an HTTP ``status`` answered about ``what`` (a repo id, or repo:path)."""
    if status in (401, 403):
        return AuthError(f"the Hub refused the token for {what} (HTTP {status})", AUTH_HINT)
    if status == 404 and error_code in ("EntryNotFound", "RevisionNotFound"):
        return EntryNotFoundError(f"{what} is not in the repo (HTTP 404 {error_code})")
    if status == 404:
        return RepoNotFoundError(f"the dataset repo {what} does not exist or is not visible", AUTH_HINT)
    if status in (409, 412):
        return CommitConflictError(f"{what} changed while committing (HTTP {status})")
    if status == 429:
        return RateLimitedError(f"the Hub rate-limited {what} (HTTP 429)", UNAVAILABLE_HINT, _seconds(retry_after))
    if status in (408, 425) or status >= 500:
        return HubServerError(f"the Hub answered HTTP {status} for {what}", UNAVAILABLE_HINT)
    return HubUnavailableError(f"the Hub answered HTTP {status} for {what}", UNAVAILABLE_HINT)


class HttpResponse(Protocol):
    """What the table needs of an HTTP response (httpx's and requests' both fit)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


def from_response(response: HttpResponse | None, what: str, endpoint: str | None, cause: BaseException) -> HubError:
    """``hub_error`` for a client's HTTP error; no response at all means the Hub was not reached."""
    if response is None:
        return unreachable(what, endpoint, cause)
    headers = response.headers
    return hub_error(response.status_code, what, headers.get("X-Error-Code"), headers.get("Retry-After"))


def transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level failures of whichever HTTP client huggingface_hub uses (httpx2, httpx, requests)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        with contextlib.suppress(ImportError, AttributeError):
            found.append(getattr(importlib.import_module(module), name))
    return tuple(found)


def unreachable(what: str, endpoint: str | None, cause: BaseException) -> HubUnreachableError:
    where = endpoint or "https://huggingface.co"
    return HubUnreachableError(f"cannot reach the Hub at {where} for {what} ({type(cause).__name__})", UNAVAILABLE_HINT)


# --- export -----------------------------------------------------------------------------------


# --- a cluster run (gymrec-play --ray) ------------------------------------------------------------


class ClusterError(GymrecError, RuntimeError):
    """Ray is not installed, the cluster cannot be reached, or it has no node to record on."""


class PlannedEpisodesFailedError(ClusterError):
    """Some planned episodes were not recorded after every retry: the run is incomplete."""

    exit_code = 1


class ExportError(GymrecError):
    """``gymrec-export`` cannot produce the requested Minari dataset or video."""


class ExportTargetExistsError(ExportError, FileExistsError):
    """The output already exists and ``--force`` was not given; it is left untouched."""


class MinariMissingError(ExportError, ImportError):
    """The ``minari`` package (or the version gymrec verified as lossless) is not installed."""


class LossyExportError(ExportError, ValueError):
    """The export would not keep the observations bit-identical, so it is refused."""


class ExportEnvError(ExportError, ValueError):
    """The episodes cannot share one env spec (mixed envs or kwargs), or the env cannot be described."""


class ExportCorruptError(ExportError, ValueError):
    """Every episode an export would write is damaged, so nothing was written."""

    exit_code = 5  # the corruption code, as replay's


class ExportDiskFullError(ExportError, OSError):
    """The disk holding the export target filled up; the partial output was removed."""


class ViewerError(GymrecError, ValueError):
    """gymrec-view cannot start: a SOURCE it cannot read, a token file without a token, a port it cannot use."""
