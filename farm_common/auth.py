"""Bearer-token check shared by both services: 401 without a token, 403 with a wrong one.

Also what keeps the token out of logs (the dashboard takes it once as `?token=`, which an
access log would otherwise record) and the start-up warning for an open farm on a network.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import re
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi import Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from farm_common.errors import FarmError, Forbidden, Unauthorized, error_body

OPEN_PATHS = frozenset({"/health"})


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS


def check_bearer(
    request: Request,
    token: str | Sequence[str] | None,
    is_open: Callable[[str], bool] = is_open_path,
) -> None:
    """Raise unless the request carries `token` (or one of several); no-op when no token is
    configured.

    The path is the one the router routes on, `scope["path"]`: `request.url` is rebuilt from
    the Host header, which a client writes (`Host: x/health?` made `/render` look like
    `/health` to Starlette before 1.0.1, CVE-2026-48710).
    """
    tokens = [token] if isinstance(token, str) else list(token or [])
    if not tokens or is_open(request.scope["path"]):
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given:
        raise Unauthorized(
            "this farm needs a token: send 'Authorization: Bearer <token>' (FARM_TOKEN)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    # Each compared, none skipped: the time taken says nothing of which matched.
    if not sum(tokens_match(given.strip(), t) for t in tokens):
        raise Forbidden("wrong token: use the FARM_TOKEN the farm was started with")


# Tokens that were once published as examples (compose.yaml and the k8s Secret shipped the
# first): a farm started with one is as open as one without a token.
PUBLISHED_TOKENS = frozenset({"change-me-local", "change-me", "changeme"})


def check_token_setting(token: str | None) -> str | None:
    """A settings validator: refuse a token anyone could know; '' means none."""
    if token is not None and token.strip().lower() in PUBLISHED_TOKENS:
        raise ValueError(
            f"{token!r} is a published example, not a secret: set a token of your own, e.g. "
            "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return token or None


def tokens_match(given: str, token: str) -> bool:
    """Constant time, and the digests hide the token's length too."""
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(token.encode()).digest()
    )


def write_secret(path: Path, secret: str) -> None:
    """Write `secret` (and a newline) to `path`, readable by its owner only from the first
    byte, in place at once (written aside, then renamed); its folder is made if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    os.replace(part, path)


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


class BearerTokenMiddleware:
    """ASGI middleware applying `check_bearer` to every HTTP request, /docs and 404s included.

    A route dependency would miss FastAPI's own /docs and /openapi.json. `token` is one token,
    or a function giving the tokens taken now (a node's: render_node/credentials.py).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | Callable[[], Sequence[str]] | None,
        is_open: Callable[[str], bool] = is_open_path,
    ) -> None:
        self.app = app
        self.token = token
        self.is_open = is_open

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tokens = self.token() if callable(self.token) else self.token
        if scope["type"] == "http" and tokens:
            try:
                check_bearer(Request(scope), tokens, self.is_open)
            except FarmError as exc:
                response = JSONResponse(
                    error_body(exc.code, exc.detail),
                    status_code=exc.status_code,
                    headers=exc.headers,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


SECRET_PARAMS = frozenset({"token", "access_token", "api_key"})
# A query as a log line shows it: from the first `?` to the next blank, still percent-encoded
# as the client sent it (a request target has no blanks: uvicorn refuses them).
_QUERY = re.compile(r"\?(\S*)")
# Its fields: `&` as the server splits them, `;` and `?` too, to hide more rather than less.
_FIELD_SEPARATORS = re.compile(r"([&;?])")
_QUOTES = "\"'"


def sets_a_secret(field: str) -> bool:
    """Whether a query field `key=value` sets a secret, its key decoded as the server decodes
    it (`tok%65n`, `TOKEN` and `token` alike)."""
    pairs = urllib.parse.parse_qsl(field, keep_blank_values=True)
    return any(key.strip().lower() in SECRET_PARAMS for key, _ in pairs)


def _hide_secret_values(query: str) -> str:
    fields = _FIELD_SEPARATORS.split(query)
    for i, field in enumerate(fields):
        key, eq, value = field.partition("=")
        if eq and sets_a_secret(field):
            # A quote closing the URL in a message stays: it tells nothing of the value.
            closing = value[-1] if value and value[-1] in _QUOTES else ""
            fields[i] = f"{key}=***{closing}"
    return "".join(fields)


def redact(text: str) -> str:
    """`/?token=abc&x=1` -> `/?token=***&x=1`, the rest of the line kept. A value is hidden
    whole, up to the next field or blank (`#` and quotes included: the server reads them as
    part of it); keys are compared decoded: `?tok%65n=` and `?TOKEN=` are the token too."""
    return _QUERY.sub(lambda m: "?" + _hide_secret_values(m.group(1)), text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message and arguments so no token in a query string is logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log() -> None:
    """Install `RedactSecrets` on uvicorn's loggers (after uvicorn configured logging)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSecrets) for f in logger.filters):
            logger.addFilter(RedactSecrets())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def warn_if_open(log: logging.Logger, host: str, token: str | None, what: str) -> bool:
    """Say so when a service without a token listens beyond loopback; True when it did."""
    if token or is_loopback(host):
        return False
    log.warning(
        "listening on %s without a token: anyone who can reach this port can %s; "
        "set --token / FARM_TOKEN (or bind 127.0.0.1)",
        host,
        what,
    )
    return True
