"""The uploader's Hub calls: huggingface_hub's exception classes for shared.hub_translate."""

from __future__ import annotations

from contextlib import AbstractContextManager

from huggingface_hub import get_session
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from gymrec.shared.hub_translate import HubClientErrors, translating

HF_ERRORS = HubClientErrors.of(HfHubHTTPError, HFValidationError, LocalEntryNotFoundError)


def hub_call(what: str, endpoint: str | None) -> AbstractContextManager[None]:
    return translating(HF_ERRORS, what, endpoint)


def set_request_timeout(seconds: float) -> None:
    """huggingface_hub's shared HTTP client waits forever (``timeout=None``): a stalled Hub would stall us.

    Called once at the CLI edge; a timeout is a transport failure, retried like a dropped connection.
    """
    get_session().timeout = seconds  # type: ignore[assignment]  # httpx accepts a float for every phase
