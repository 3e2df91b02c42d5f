"""/tokens and /audit: an admin makes, lists and revokes the farm's tokens, and reads who
changed what; /whoami tells any token its own name and role."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import APIRouter, Query

from farm_common.errors import BadRequest, Conflict, NotFound, error_response
from orchestrator.access import RESERVED_NAMES
from orchestrator.api.authorization import PrincipalDep
from orchestrator.api.deps import FarmDep
from orchestrator.api.models import AuditEntry, TokenCreated, TokenRequest, TokenView, WhoAmI
from orchestrator.store.tokens import AUDIT_LISTED, TokenRow, token_hash

router = APIRouter()

TOKEN_PREFIX = "farm_"


def new_token() -> str:
    """A token's text: 256 random bits, prefixed so a leaked one is recognisable in a scan."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def _view(row: TokenRow) -> dict[str, Any]:
    return {"name": row.name, "role": row.role, "url": row.url, "created": row.created,
            "created_by": row.created_by, "revoked": row.revoked}  # fmt: skip


@router.post(
    "/tokens",
    status_code=201,
    response_model=TokenCreated,
    responses={409: error_response("a token of that name is in use")},
)
async def create_token(farm: FarmDep, who: PrincipalDep, body: TokenRequest) -> dict[str, Any]:
    """A new token of `role` under `name`. Its text is in this answer only: the farm keeps a
    hash of it."""
    if body.name in RESERVED_NAMES or body.name.startswith("node@"):
        raise BadRequest(f"{body.name!r} is a name the farm uses itself: choose another")
    token = new_token()
    made = await farm.store.run(
        lambda: farm.store.add_token(
            body.name, body.role, token_hash(token), farm.clock(), created_by=who.name
        )
    )
    if not made:
        raise Conflict(
            f"a token named {body.name!r} exists: revoke it first (DELETE /tokens/{body.name}) "
            "or choose another name"
        )
    return {"name": body.name, "role": body.role, "token": token}


@router.get("/tokens", response_model=list[TokenView])
async def list_tokens(farm: FarmDep) -> list[dict[str, Any]]:
    """Every token the farm made (never their text), nodes' credentials and revoked ones too."""
    return [_view(row) for row in await farm.store.read(lambda store: store.list_tokens())]


@router.delete("/tokens/{name}", response_model=TokenView)
async def revoke_token(farm: FarmDep, name: str) -> dict[str, Any]:
    """Revoke a token: from its next request it is refused. A node's credential revoked, the
    node is refused until it joins again with a join token."""
    if name in RESERVED_NAMES:
        raise BadRequest(
            f"{name!r} is a bootstrap token from the orchestrator's settings: change the setting "
            "(FARM_TOKEN / FARM_JOIN_TOKEN) and restart it"
        )
    now = farm.clock()
    row = await farm.store.run(farm.store.revoke_token, name, now)
    if row is None:
        raise NotFound(f"no token named {name!r}: see GET /tokens")
    return {**_view(row), "revoked": row.revoked or now}


@router.get("/audit", response_model=list[AuditEntry])
async def audit(
    farm: FarmDep,
    who: str | None = Query(default=None, max_length=200, description="one token's entries"),
    limit: int = Query(default=200, ge=1, le=AUDIT_LISTED),
) -> list[dict[str, Any]]:
    """What tokens changed, newest first: submits, cancels, requeues, deletes, node actions,
    tokens made and revoked, with the answer's status (refusals too)."""
    return await farm.store.read(lambda store: store.audit_log(limit, who))


@router.get("/whoami", response_model=WhoAmI)
async def whoami(who: PrincipalDep) -> WhoAmI:
    """The name and role of the token the request carries."""
    return WhoAmI(name=who.name, role=who.role)
