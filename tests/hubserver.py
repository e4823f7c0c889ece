"""A Hub-compatible HTTP server for the test suite: the import path tests use, kept stable.

The implementation lives in the `tests.hub` package (state, wire, faults, handler, endpoints,
server); this module re-exports its public names so `from tests.hubserver import running_hub`
(or `from hubserver import ...` with tests/ on sys.path) keeps working.
"""

from __future__ import annotations

from tests.hub import *  # noqa: F403  (a facade: exactly the package's public names)
from tests.hub import __all__ as __all__
