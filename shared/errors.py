"""Every error gymrec raises on purpose, in one place.

Each error's ``str()`` is the one line a user sees: what is wrong, then how to fix it. The CLI edge
(``shared.cli_errors``) turns them into that line and a non-zero exit code; nothing below the CLI
prints or exits.
"""

from __future__ import annotations


class GymrecError(Exception):
    """Base of all expected failures. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


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

    exit_code = 4

    def __init__(self, where: str, array: str, chunk: int, steps: tuple[int, int], problem: str) -> None:
        self.where, self.array, self.chunk, self.steps = where, array, chunk, steps
        super().__init__(f"{where}: stored data is corrupt: chunk {chunk} of {array!r} (steps {steps[0]}..{steps[1] - 1}) "
                         f"{problem}", "the episode is damaged; recover it from a copy or re-record it")


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


# --- hub / dataset ----------------------------------------------------------------------------


class AuthError(GymrecError, PermissionError):
    """The Hub refused the token (401/403) or no token is available where one is needed."""


class RepoIdError(GymrecError, ValueError):
    """A repo id is malformed (for example it tries a path traversal)."""


class RepoNotFoundError(GymrecError, LookupError):
    """The dataset repo does not exist or is not visible with this token."""


class HubUnavailableError(GymrecError, ConnectionError):
    """The Hub kept failing after every retry; the episode stays queued."""


class DatasetError(GymrecError, ValueError):
    """A local dataset directory is missing or not in gymrec's layout."""


class CommitConflictError(HubUnavailableError):
    """The repo's head moved under a ``parent_commit`` commit; re-read it and try again."""


# --- export -----------------------------------------------------------------------------------


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


class ExportDiskFullError(ExportError, OSError):
    """The disk holding the export target filled up; the partial output was removed."""
