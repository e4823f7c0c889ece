"""Replay's Hub calls, in replay's words: ``shared.hub.client`` translates the client's failures; an
unreachable Hub is then told with replay's way out (nothing is queued here, unlike in the uploader)."""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterator

from gymrec.shared.errors import UNAVAILABLE_HINT, HubUnavailableError
from gymrec.shared.hub.client import hub_call as client_call

REPLAY_HINT = "check --endpoint / HF_ENDPOINT and the network, or replay a downloaded copy with --local-dir DIR"
CLIENT_LOGGER = "huggingface_hub"


@contextlib.contextmanager
def hub_call(what: str, endpoint: str | None) -> Iterator[None]:
    """Hub failures as gymrec errors, an unreachable Hub with replay's hint."""
    try:
        with client_call(what, endpoint):
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
    logging.getLogger(CLIENT_LOGGER).setLevel(logging.DEBUG if verbose else logging.ERROR)
