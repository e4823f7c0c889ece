"""huggingface_hub, in one place: its exception classes, its failures translated, its HTTP timeout.

The one module of ``shared`` that imports the client (pyproject's import contracts allow exactly it),
so the uploader and replay share one copy; the recorder and export never import it. The translation
itself (HTTP status -> typed error) is ``shared.hub.translate``'s.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from huggingface_hub import get_session
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)

from gymrec.shared.hub.translate import HubClientErrors, translating

HF_ERRORS = HubClientErrors.of(HfHubHTTPError, HFValidationError, LocalEntryNotFoundError)


def hub_call(what: str, endpoint: str | None) -> AbstractContextManager[None]:
    return translating(HF_ERRORS, what, endpoint)


def offline_mode(error: BaseException) -> bool:
    """Did huggingface_hub refuse to send the request because HF_HUB_OFFLINE is set? Retrying cannot help."""
    return isinstance(error.__cause__, OfflineModeIsEnabled)


def set_request_timeout(seconds: float) -> None:
    """huggingface_hub's shared HTTP client waits forever (``timeout=None``): a stalled Hub would stall us.

    The client is process-wide, so this is the only place that changes it, called once at the CLI edge
    (``gymrec-uploader``, ``gymrec-replay``); a timeout is a transport failure, retried like a dropped
    connection.
    """
    get_session().timeout = seconds  # httpx accepts a float for every phase
