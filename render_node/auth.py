"""Bearer-token check shared by both services: 401 without a token, 403 with a wrong one."""

from __future__ import annotations

import hmac

from fastapi import Request

from render_node.errors import Forbidden, Unauthorized

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
