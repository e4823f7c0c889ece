"""The uploader's Hub calls: huggingface_hub's exception classes for shared.hub_translate."""

from __future__ import annotations

from contextlib import AbstractContextManager

from huggingface_hub import get_session
from huggingface_hub.errors import (
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)

from gymrec.shared.hub_translate import HubClientErrors, set_timeout, translating

HF_ERRORS = HubClientErrors.of(HfHubHTTPError, HFValidationError, LocalEntryNotFoundError)


def hub_call(what: str, endpoint: str | None) -> AbstractContextManager[None]:
    return translating(HF_ERRORS, what, endpoint)


def offline_mode(error: BaseException) -> bool:
    """Did huggingface_hub refuse to send the request because HF_HUB_OFFLINE is set? Retrying cannot help."""
    return isinstance(error.__cause__, OfflineModeIsEnabled)


def set_request_timeout(seconds: float) -> None:
    set_timeout(get_session(), seconds)
