"""The admin token every viewer page needs: the episodes may be people's play, their ids and their studies.

The token comes once in the URL (``?token=``), which answers with a cookie and a redirect to the same
page without it, so the token leaves the address bar and the history; scripts send it in a header
(``Authorization: Bearer`` or ``X-Gymrec-Token``). Every comparison is constant-time.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.datastructures import URL
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp

from gymrec.shared.errors import ViewerError

TOKEN_HEADER = "x-gymrec-token"
MIN_TOKEN_CHARS = 16
REFUSED = "gymrec-view: this page needs the admin token: open the URL gymrec-view printed (it ends in ?token=...)"
# Every answer: never cached, never framed by another site, the URL never sent on as a referrer.
SAFE_HEADERS = (("Cache-Control", "no-store"), ("X-Frame-Options", "DENY"), ("Referrer-Policy", "no-referrer"),
                ("X-Content-Type-Options", "nosniff"))  # fmt: skip


def new_token() -> str:
    return secrets.token_urlsafe(32)


def checked_token(text: str, where: str) -> str:
    """A token read from a file: stripped (a trailing newline is the common case), long enough to guess at."""
    token = text.strip()
    if len(token) < MIN_TOKEN_CHARS or any(c.isspace() for c in token):
        raise ViewerError(f"{where} does not hold a usable token (one word of at least {MIN_TOKEN_CHARS} characters)",
                          "write one there, e.g. python3 -c 'import secrets; print(secrets.token_urlsafe(32))'")
    return token


def same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class TokenGate(BaseHTTPMiddleware):
    def __init__(self, app: ASGIApp, token: str, cookie: str) -> None:
        super().__init__(app)
        self.token = token
        self.cookie = cookie

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await self._gate(request, call_next)
        response.headers.update(dict(SAFE_HEADERS))
        return response

    async def _gate(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        in_url = request.query_params.get("token")
        if in_url is not None:
            if not same(in_url, self.token):
                return PlainTextResponse(REFUSED, status_code=401)
            rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = URL(path=request.url.path).include_query_params(**dict(rest)) if rest else URL(path=request.url.path)
            answer = RedirectResponse(str(target), status_code=303)
            answer.set_cookie(self.cookie, self.token, httponly=True, samesite="strict", path="/")
            return answer
        bearer = request.headers.get("authorization", "")
        given = (request.cookies.get(self.cookie) or request.headers.get(TOKEN_HEADER)
                 or (bearer[len("Bearer "):] if bearer.startswith("Bearer ") else None))  # fmt: skip
        if not same(given, self.token):
            return PlainTextResponse(REFUSED, status_code=401)
        return await call_next(request)
