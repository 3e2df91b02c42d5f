"""The orchestrator's door: who a request comes from (its bearer token), whether its role may
call the endpoint (orchestrator/access.py), and the audit log of what was changed.

An ASGI middleware rather than route dependencies: FastAPI's own /docs and /openapi.json, and
paths no route has, are checked too, and nothing is read before the token is.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm_common.auth import tokens_match, write_secret
from farm_common.errors import FarmError, Forbidden, Unauthorized, error_body
from orchestrator.access import (
    ANONYMOUS,
    BOOTSTRAP_ADMIN,
    BOOTSTRAP_JOIN,
    Principal,
    Role,
    Rule,
    first_parameter,
    needs,
    rule_for,
)
from orchestrator.store.tokens import token_hash

log = logging.getLogger(__name__)

# Writes not worth a line each: heartbeats, and the files of a shot before its job is submitted.
NOT_AUDITED = frozenset({"/nodes/register", "/scenes", "/files/{sha256}", "/files/missing"})
ANSWER_READ = 65536  # of an audited answer, to name what it made (a job's id, a token's name)


class Doorkeeper:
    """Turns a bearer token into a Principal: the bootstrap tokens from the settings, any
    other from the store's hashes (revocation counts from the next request)."""

    def __init__(self, admin_token: str | None, join_token: str | None) -> None:
        self.admin_token = admin_token
        self.join_token = join_token

    @property
    def open(self) -> bool:
        """No FARM_TOKEN: the farm is open, as it always was without one."""
        return not self.admin_token

    async def principal(self, given: str, farm: Any) -> Principal:
        """`farm` None: before the lifespan made the store (never in service), the bootstrap
        tokens only."""
        if self.admin_token and tokens_match(given, self.admin_token):
            return Principal(BOOTSTRAP_ADMIN, Role.ADMIN)
        if self.join_token and tokens_match(given, self.join_token):
            return Principal(BOOTSTRAP_JOIN, Role.NODE)
        digest = token_hash(given)
        row = None if farm is None else await farm.store.read(lambda s: s.token_by_hash(digest))
        if row is None:
            raise Forbidden("wrong token: use FARM_TOKEN, or a token an admin made for you")
        if row.revoked is not None:
            raise Forbidden(f"the token {row.name!r} was revoked: ask an admin for a new one")
        return Principal(row.name, Role(row.role), row.url)


def load_join_token(token: str | None, path: Path | None) -> str | None:
    """The join token: `token` if given, else the one in `path`, made there (readable by its
    owner only) when the file is missing or empty."""
    if token or path is None:
        return token
    fix = "or give the token with --join-token / FARM_JOIN_TOKEN"
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    except OSError as exc:
        raise RuntimeError(f"cannot read the join token in {path} ({exc}): {fix}") from None
    if kept:
        return kept
    made = "farm_join_" + secrets.token_urlsafe(32)
    try:
        write_secret(path, made)
    except OSError as exc:
        raise RuntimeError(
            f"cannot keep the join token in {path} ({exc}): make its folder writable by the "
            f"orchestrator's user, {fix}"
        ) from None
    log.info("made a join token for render nodes in %s", path)
    return made


def principal_of(request: Request) -> Principal:
    """Who the request comes from (set by AccessMiddleware)."""
    found = request.scope.get("state", {}).get("principal")
    return found if isinstance(found, Principal) else ANONYMOUS


PrincipalDep = Annotated[Principal, Depends(principal_of)]


def _bearer(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"authorization":
            scheme, _, given = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and given.strip():
                return given.strip()
            return None
    return None


def _target(template: str, path: str, answer: bytes) -> str | None:
    """What an audited request acted on: its path's job or token, or what its answer made."""
    acted_on = first_parameter(template, path)
    if acted_on is not None:
        return acted_on
    try:
        body = json.loads(answer)
    except ValueError:
        return None
    if isinstance(body, dict):
        for key in ("id", "url", "name"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return None


class AccessMiddleware:
    """Checks every HTTP request against its endpoint's rule; logs the writes it let through
    (and those refused to a known token) to the audit table."""

    def __init__(
        self,
        app: ASGIApp,
        doorkeeper: Doorkeeper,
        is_open: Callable[[str], bool],
        clock: Callable[[], float],
    ) -> None:
        self.app = app
        self.doorkeeper = doorkeeper
        self.is_open = is_open
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        rule, template = rule_for(method, path)
        if rule == Rule.OPEN or self.is_open(path):
            await self.app(scope, receive, send)
            return
        farm = getattr(scope["app"].state, "farm", None)
        try:
            who = await self._who(scope, farm)
        except FarmError as exc:
            await self._refuse(exc, scope, receive, send)
            return
        audited = (
            method not in ("GET", "HEAD")
            and template is not None
            and template not in NOT_AUDITED
            and farm is not None
        )
        if not who.may(rule):
            refusal = Forbidden(
                f"the token {who.name!r} (role {who.role}) may not {method} {template or path}: "
                f"that takes {needs(rule)}"
            )
            if audited and template is not None:
                await self._audit(farm, who, method, template, path, 403, b"", refusal.detail)
            await self._refuse(refusal, scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = who
        if not audited:
            await self.app(scope, receive, send)
            return
        status = 500
        answer = bytearray()

        async def send_noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) < ANSWER_READ:
                answer.extend(message.get("body", b"")[:ANSWER_READ])
            await send(message)

        try:
            await self.app(scope, receive, send_noting)
        finally:
            assert template is not None
            await self._audit(farm, who, method, template, path, status, bytes(answer))

    async def _who(self, scope: Scope, farm: Any) -> Principal:
        if self.doorkeeper.open:
            return ANONYMOUS
        given = _bearer(scope)
        if given is None:
            raise Unauthorized(
                "this farm needs a token: send 'Authorization: Bearer <token>' (FARM_TOKEN, or "
                "one from `farm token create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await self.doorkeeper.principal(given, farm)

    async def _audit(
        self,
        farm: Any,
        who: Principal,
        method: str,
        template: str,
        path: str,
        status: int,
        answer: bytes,
        detail: str | None = None,
    ) -> None:
        target = _target(template, path, answer) if status < 400 else _target(template, path, b"")
        if detail is None and status >= 400:
            detail = _error_detail(answer)
        try:
            await farm.store.run(
                farm.store.add_audit, self.clock(), who.name, str(who.role),
                f"{method} {template}", target, status, detail,
            )  # fmt: skip
        except Exception:  # the answer is sent: a full disk must not turn it into a 500
            log.exception("could not write the audit entry for %s %s by %s", method, path, who)

    @staticmethod
    async def _refuse(exc: FarmError, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse(
            error_body(exc.code, exc.detail), status_code=exc.status_code, headers=exc.headers
        )
        await response(scope, receive, send)


def _error_detail(answer: bytes) -> str | None:
    try:
        body = json.loads(answer)
    except ValueError:
        return None
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail[:500] if isinstance(detail, str) else None
