"""Replay's Hub calls: huggingface_hub's exception classes for shared.hub_translate, in replay's words."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator

from huggingface_hub import get_session
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from gymrec.shared.errors import UNAVAILABLE_HINT, HubUnavailableError
from gymrec.shared.hub_translate import HubClientErrors, set_timeout, translating

HF_ERRORS = HubClientErrors.of(HfHubHTTPError, HFValidationError, LocalEntryNotFoundError)
REPLAY_HINT = "check --endpoint / HF_ENDPOINT and the network, or replay a downloaded copy with --local-dir DIR"


@contextlib.contextmanager
def hub_call(what: str, endpoint: str | None) -> Iterator[None]:
    """Hub failures as gymrec errors; an unreachable Hub is told in replay's terms (nothing is queued here)."""
    try:
        with translating(HF_ERRORS, what, endpoint):
            yield
    except HubUnavailableError as e:
        if e.hint != UNAVAILABLE_HINT:
            raise
        reworded = copy.copy(e)
        reworded.hint, reworded.args = REPLAY_HINT, (f"{e.message} ({REPLAY_HINT})",)
        raise reworded from e.__cause__


def quiet_client_logs(verbose: bool) -> None:
    """huggingface_hub logs every retry through its own handler and again through the root logger:
    the failure is told once, in one line, by the CLI edge (``-v`` shows the retries)."""
    logging.getLogger("huggingface_hub").setLevel(logging.DEBUG if verbose else logging.ERROR)


def set_request_timeout(seconds: float) -> None:
    set_timeout(get_session(), seconds)
