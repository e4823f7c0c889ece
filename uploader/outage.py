"""The Hub unreachable is one state of the uploader, not a retry per episode.

``HubPusher`` marks the Hub down when one call's retries give up on a transient failure (no answer,
5xx, 429 past its budget); from then on its calls fail at once. ``Outage`` turns that state into
what a user reads: one line when the Hub goes down, probes with growing backoff (capped) and no line
per probe, one line when it answers again. ``--once`` does not wait: it ends with one line naming
the endpoint and how many episodes stay queued.

Nothing here quarantines or fails an episode: an unreachable Hub is transient, so every episode
simply stays in the spool (its claim released) and is uploaded once the Hub answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gymrec.shared.errors import HubUnavailableError, HubUnreachableError
from gymrec.shared.hub.client import offline_mode
from gymrec.uploader.card import plural
from gymrec.uploader.hub import HubPusher, RetryPolicy

log = logging.getLogger(__name__)

OFFLINE_HINT = "this machine may be offline: check the network and --endpoint / HF_ENDPOINT, then run again"
_CAUSE_CHARS = 120  # a cause longer than this is a stack of wrappers, not news


def cause_of(error: HubUnavailableError) -> str:
    """What actually failed, short: ``ConnectError: [Errno 111] Connection refused`` or ``HTTP 503``."""
    if offline_mode(error):
        return "HF_HUB_OFFLINE is set"
    original = error.__cause__
    status = getattr(getattr(original, "response", None), "status_code", None)
    if isinstance(status, int):
        return f"HTTP {status}"
    if original is None:
        return error.message
    text = " ".join(str(original).split())
    cause = f"{type(original).__name__}: {text}" if text else type(original).__name__
    return cause if len(cause) <= _CAUSE_CHARS else cause[: _CAUSE_CHARS - 3] + "..."


def _stay(n: int) -> str:
    return f"{plural(n, 'episode')} {'stays' if n == 1 else 'stay'} queued"


def _state(error: HubUnavailableError) -> str:
    return "unreachable" if isinstance(error, HubUnreachableError) else "unavailable"


class Outage:
    """Waits out a down Hub for the daemon, and words it for ``--once``. ``queued`` counts the waiting episodes."""

    def __init__(self, pusher: HubPusher, policy: RetryPolicy, stop: threading.Event, queued: Callable[[], int]) -> None:
        self._pusher = pusher
        self._policy = policy
        self._stop = stop
        self._queued = queued

    @property
    def down(self) -> HubUnavailableError | None:
        return self._pusher.down

    def once_error(self) -> HubUnavailableError:
        """``--once``'s closing line: the endpoint, that it is down, and how many episodes stay queued."""
        error = self._pusher.down
        assert error is not None, "the Hub is not down"
        return HubUnavailableError(f"Hub at {self._pusher.endpoint} {_state(error)} ({cause_of(error)}); "
                                   f"{_stay(self._queued())}", OFFLINE_HINT)  # fmt: skip

    def wait_until_up(self) -> bool:
        """Say the Hub is down (once), probe it with growing backoff until it answers; False when stopped first.

        A refused token (AuthError) propagates: that is not an outage, and nothing else would get through.
        """
        error = self._pusher.down
        assert error is not None, "the Hub is not down"
        log.warning("Hub at %s %s (%s); %s; retrying with backoff", self._pusher.endpoint, _state(error),
                    cause_of(error), _stay(self._queued()))  # fmt: skip
        probes = 0
        while True:
            probes += 1
            if self._stop.wait(self._policy.delay(probes)):
                return False
            try:
                self._pusher.probe()
            except HubUnavailableError as e:  # still down: no line per probe (-v shows them)
                log.info("probe %d of %s: %s", probes, self._pusher.endpoint, cause_of(e))
                continue
            log.warning("Hub at %s reachable again; uploading %s", self._pusher.endpoint,
                        plural(self._queued(), "queued episode"))  # fmt: skip
            return True
