"""The uploader's Hub calls: huggingface_hub's exception classes for shared.hub_translate."""

from __future__ import annotations

from contextlib import AbstractContextManager

from huggingface_hub import get_session
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from gymrec.shared.hub_translate import HubClientErrors, set_timeout, translating

HF_ERRORS = HubClientErrors.of(HfHubHTTPError, HFValidationError, LocalEntryNotFoundError)


def hub_call(what: str, endpoint: str | None) -> AbstractContextManager[None]:
    return translating(HF_ERRORS, what, endpoint)



def set_request_timeout(seconds: float) -> None:
    set_timeout(get_session(), seconds)
