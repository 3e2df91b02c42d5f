"""Bearer-token check shared by both services: 401 without a token, 403 with a wrong one."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from render_node.errors import FarmError, Forbidden, Unauthorized, error_body

OPEN_PATHS = frozenset({"/health"})


def check_bearer(request: Request, token: str | None) -> None:
    """Raise unless the request carries `token`; no-op when no token is configured."""
    if not token or request.url.path in OPEN_PATHS:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "this farm needs a token: send 'Authorization: Bearer <token>' (FARM_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        raise Forbidden("wrong token: use the FARM_TOKEN the farm was started with")


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class BearerTokenMiddleware:
    """ASGI middleware applying `check_bearer` to every HTTP request, /docs and 404s included.

    A route dependency would miss FastAPI's own /docs and /openapi.json.
    """

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self.token:
            try:
                check_bearer(Request(scope), self.token)
            except FarmError as exc:
                response = JSONResponse(
                    error_body(exc.code, exc.detail),
                    status_code=exc.status_code,
                    headers=exc.headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
