"""Replay's one translation of huggingface_hub / HTTP failures into ``shared.errors``.

The status -> class table is ``shared.errors.hub_error``, which the uploader uses too; this module only
unpacks huggingface_hub's exceptions for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError

from gymrec.shared.errors import GymrecError, RepoIdError, from_response, transport_errors, unreachable

UNREACHABLE: tuple[type[BaseException], ...] = (LocalEntryNotFoundError, *transport_errors())


@contextlib.contextmanager
def hub_call(what: str, endpoint: str | None) -> Iterator[None]:
    """Run huggingface_hub calls; their failures leave as gymrec errors (``raise ... from e``)."""
    try:
        yield
    except GymrecError:
        raise
    except HfHubHTTPError as e:
        raise from_response(e.response, what, endpoint, e) from e
    except HFValidationError as e:
        raise RepoIdError(f"{what!r} is not a valid repo id", "use the form owner/name") from e
    except UNREACHABLE as e:
        raise unreachable(what, endpoint, e) from e
