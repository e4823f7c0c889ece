"""The viewer's Starlette app: two pages and a read-only JSON API over one source.

    GET /episodes                          the list page (filters, pages of the index)
    GET /episodes/{id}                     the episode page (canvas playback, steps, lineage, verdict)
    GET /api/episodes?env_id=..&min_..=..  one page of list rows, filtered
    GET /api/episodes/{id}                 attributes, per-step action/reward/actor, lineage, cached verdict
    GET /api/episodes/{id}/blocks/{n}.png  frames n*64.. of the episode, stacked, lossless
    GET /api/episodes/{id}/verdict         the replay verdict (computed on the first request)

Every route is behind ``TokenGate``; only GET exists, and nothing writes to the source.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from gymrec.replay.view import pages
from gymrec.replay.view.auth import TokenGate
from gymrec.replay.view.catalog import NUMBER_COLUMNS, TEXT_COLUMNS, Catalog, Query, page
from gymrec.replay.view.lineage import lineage
from gymrec.replay.view.playback import block_png, steps_json
from gymrec.replay.view.verdicts import Verdicts
from gymrec.shared.errors import EpisodeNotFoundError, GymrecError
from gymrec.shared.spool.sources import EpisodeSource, SpoolSource

OPEN_EPISODES = 4  # episodes kept open (their per-step arrays read) for the frame requests that follow
MAX_PAGE = 500
HIDDEN_ATTRIBUTES = ("input_log", "start_state")  # large, and shown nowhere on the page


@dataclass(frozen=True)
class ViewSettings:
    token: str
    cookie: str  # named per port: cookies are shared by every port of a host


class Viewer:
    """The source, its opened episodes (a few, most recent first out) and the verdicts."""

    def __init__(self, catalog: Catalog, verdicts: Verdicts) -> None:
        self.catalog = catalog
        self.verdicts = verdicts
        self._lock = threading.Lock()
        self._open: OrderedDict[str, EpisodeSource] = OrderedDict()

    def source(self, episode_id: str) -> EpisodeSource:
        with self._lock:
            found = self._open.get(episode_id)
            if isinstance(found, SpoolSource) and not found.episode.path.is_dir():  # the uploader moved it since
                del self._open[episode_id]
                found = None
            if found is not None:
                self._open.move_to_end(episode_id)
                return found
        found = self.catalog.open(episode_id)
        with self._lock:
            self._open[episode_id] = found
            while len(self._open) > OPEN_EPISODES:
                self._open.popitem(last=False)
        return found

    def known(self, episode_id: str) -> None:
        if not self.catalog.has(episode_id):
            raise EpisodeNotFoundError(f"no episode {episode_id} in {self.catalog.where}", "pick one from the list")


def parse_query(params: list[tuple[str, str]]) -> Query:
    """The list filters; anything else is a 400 naming it."""
    equal: list[tuple[str, str]] = []
    low: list[tuple[str, float]] = []
    high: list[tuple[str, float]] = []
    offset, limit = 0, 50
    for key, value in params:
        if value == "":
            continue
        try:
            if key == "offset":
                offset = max(0, int(value))
            elif key == "limit":
                limit = min(MAX_PAGE, max(1, int(value)))
            elif key in TEXT_COLUMNS:
                equal.append((key, value))
            elif key.startswith(("min_", "max_")) and key[4:] in NUMBER_COLUMNS:
                (low if key.startswith("min_") else high).append((key[4:], float(value)))
            else:
                raise HTTPException(400, f"unknown filter {key!r} (filter by {', '.join(TEXT_COLUMNS)}, or "
                                         f"min_/max_ of {', '.join(NUMBER_COLUMNS)})")  # fmt: skip
        except ValueError as e:
            raise HTTPException(400, f"{key}={value!r} is not a number") from e
    return Query(tuple(equal), tuple(low), tuple(high), offset, limit)


def build_app(viewer: Viewer, settings: ViewSettings) -> Starlette:
    def list_api(request: Request) -> Response:
        return JSONResponse(page(viewer.catalog.rows(), parse_query(request.query_params.multi_items())))

    def episode_api(request: Request) -> Response:
        eid = request.path_params["eid"]
        viewer.known(eid)
        source = viewer.source(eid)
        rows = viewer.catalog.rows()
        row = next((r for r in rows if r["episode_id"] == eid), None)
        if row is None:  # gone between the check and the listing (a spool being cleaned up)
            raise EpisodeNotFoundError(f"no episode {eid} in {viewer.catalog.where}", "pick one from the list")
        attributes = {k: v for k, v in source.attrs.as_dict().items() if k not in HIDDEN_ATTRIBUTES}
        return JSONResponse({
            "episode_id": eid, "where": viewer.catalog.where, "attributes": attributes,
            "row": row, "steps": steps_json(source),
            "lineage": lineage(rows, eid), "verdict": viewer.verdicts.cached(eid),
        })  # fmt: skip

    def block_api(request: Request) -> Response:
        eid = request.path_params["eid"]
        viewer.known(eid)
        data = block_png(viewer.source(eid), request.path_params["block"])
        if data is None:
            raise HTTPException(404, f"episode {eid} has no frame block {request.path_params['block']}")
        return Response(data, media_type="image/png")

    def verdict_api(request: Request) -> Response:
        eid = request.path_params["eid"]
        viewer.known(eid)
        return JSONResponse(viewer.verdicts.of(eid, viewer.source))

    def episode_page(request: Request) -> Response:
        viewer.known(request.path_params["eid"])
        return HTMLResponse(pages.EPISODE_PAGE)

    def gymrec_error(request: Request, exc: Exception) -> Response:
        status = 404 if isinstance(exc, EpisodeNotFoundError) else 500
        return _error(request, status, str(exc))

    def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(request, exc.status_code, str(exc.detail))

    routes = [
        Route("/", lambda request: RedirectResponse("/episodes", status_code=303)),
        Route("/episodes", lambda request: HTMLResponse(pages.LIST_PAGE)),
        Route("/episodes/{eid}", episode_page),
        Route("/api/episodes", list_api),
        Route("/api/episodes/{eid}", episode_api),
        Route("/api/episodes/{eid}/blocks/{block:int}.png", block_api),
        Route("/api/episodes/{eid}/verdict", verdict_api),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(TokenGate, token=settings.token, cookie=settings.cookie)],
        exception_handlers={GymrecError: gymrec_error, HTTPException: http_error},
    )


def _error(request: Request, status: int, line: str) -> Response:
    """One line, as JSON for the API and as text for a page; never a traceback."""
    body: dict[str, Any] = {"error": " ".join(line.split())}
    if request.url.path.startswith("/api/"):
        return JSONResponse(body, status_code=status)
    return Response(body["error"] + "\n", status_code=status, media_type="text/plain")
