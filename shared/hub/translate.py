"""The one translation of Hub-client failures into ``shared.errors``, for the uploader and replay alike.

This module never imports huggingface_hub, so the client's exception classes come in as a
``HubClientErrors`` value, built once by ``shared.hub.client`` (the one importer of the client);
the mapping itself (HTTP status -> typed error, via ``shared.errors.from_response``) exists only here
and in the table it calls.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gymrec.shared.errors import GymrecError, RepoIdError, from_response, transport_errors, unreachable


@dataclass(frozen=True)
class HubClientErrors:
    """A Hub client's exception classes: HTTP answers, repo ids it rejects, and "not reached at all"."""

    http: tuple[type[BaseException], ...]
    invalid_repo_id: tuple[type[BaseException], ...]
    not_reached: tuple[type[BaseException], ...]

    @classmethod
    def of(cls, http: type[BaseException], invalid_repo_id: type[BaseException],
           *not_reached: type[BaseException]) -> HubClientErrors:  # fmt: skip
        return cls((http,), (invalid_repo_id,), (*not_reached, *transport_errors()))


@contextlib.contextmanager
def translating(client: HubClientErrors, what: str, endpoint: str | None) -> Iterator[None]:
    """Run Hub-client calls; their failures leave as gymrec errors (``raise ... from e``)."""
    try:
        yield
    except GymrecError:
        raise
    except client.http as e:
        response: Any = getattr(e, "response", None)
        raise from_response(response, what, endpoint, e) from e
    except client.invalid_repo_id as e:
        raise RepoIdError(f"{what!r} is not a valid repo id", "use the form owner/name") from e
    except client.not_reached as e:
        raise unreachable(what, endpoint, e) from e
