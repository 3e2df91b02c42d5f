"""/nodes: the farm's render nodes, and their heartbeats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from farm_common.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    NotFound,
    Unavailable,
    error_response,
)
from farm_common.protocol import NodeRegistration, Registered
from orchestrator.access import Principal, Role, node_credential_name
from orchestrator.api.authorization import PrincipalDep
from orchestrator.api.deps import Farm, FarmDep
from orchestrator.api.models import NodeAction, NodeView
from orchestrator.api.tokens import new_token
from orchestrator.runtime.loop_thread import BackendUnavailable
from orchestrator.scheduling.registry import BadNodeUrl, check_node_url, normalize_url
from orchestrator.store.tokens import token_hash

router = APIRouter()

# Heartbeats per loss timeout: a node is declared lost only after this many in a row are missed.
HEARTBEATS_PER_TIMEOUT = 3


@router.get("/nodes", response_model=list[NodeView])
async def list_nodes(farm: FarmDep) -> list[dict[str, Any]]:
    return await farm.link.nodes()


@router.post(
    "/nodes/register",
    response_model=Registered,
    response_model_exclude_none=True,
    responses={
        409: error_response("a live node holds that URL with its own credential"),
        503: error_response("the farm has --max-nodes nodes"),
    },
)
async def register(farm: FarmDep, body: NodeRegistration, who: PrincipalDep) -> Registered:
    """A node's heartbeat. The answer says how often to send the next ones: the orchestrator's
    loss timeout decides that, not the node's own setting. A node that registers with a join
    token gets its own credential in the answer, good for its URL only."""
    try:
        check_node_url(body.url)
    except BadNodeUrl as exc:
        raise BadRequest(f"{exc}: register the URL this node is reachable at") from None
    url = normalize_url(body.url)
    speaks_for(who, url)
    credential = await _issue_credential(farm, who, url) if who.role == Role.NODE else None
    refused = await farm.link.register(body.model_dump())
    if refused is not None:
        raise Unavailable(refused)
    interval = farm.settings.node_timeout_seconds / HEARTBEATS_PER_TIMEOUT
    return Registered(heartbeat_seconds=round(interval, 3), credential=credential)


def speaks_for(who: Principal, url: str) -> None:
    """A node's credential speaks for the node it was issued to, and no other URL."""
    if who.url is not None and normalize_url(who.url) != url:
        raise Forbidden(
            f"this credential is node {who.url}'s: it cannot speak for {url} (start that node "
            "with a join token: it gets a credential of its own)"
        )


async def _issue_credential(farm: Farm, who: Principal, url: str) -> str | None:
    """A new credential for a node joining with a join token (None for one that has its own).
    A URL a live node holds with a credential is not handed to another joiner."""
    if who.url is not None:
        return None
    name = node_credential_name(url)
    tokens = await farm.store.read(lambda store: store.list_tokens())
    held = any(t.name == name and t.revoked is None for t in tokens)
    if held and any(n["url"] == url and n["state"] != "lost" for n in await farm.link.nodes()):
        raise Conflict(
            f"node {url} is on the farm with its own credential: a node joining with a join "
            "token gets the URL once that one is lost (a restarted node: within seconds)"
        )
    credential = new_token()
    digest, now = token_hash(credential), farm.clock()
    await farm.store.run(
        lambda: farm.store.add_token(
            name, Role.NODE, digest, now, created_by=who.name, url=url, replace=True
        )
    )
    return credential


async def _act(farm: FarmDep, body: NodeAction, action: str) -> dict[str, Any]:
    url = normalize_url(body.url)
    try:
        view = await farm.link.node_action(url, action)
    except BackendUnavailable as exc:
        raise Unavailable(f"the scheduler did not answer ({exc}): try again") from None
    if view is None:
        raise NotFound(f"no node {url} on this farm: use a URL as GET /nodes lists it")
    return view


@router.post("/nodes/drain", response_model=NodeView)
async def drain(farm: FarmDep, body: NodeAction) -> dict[str, Any]:
    """The node finishes the batches it has and takes no new ones (state `draining`) until it
    is resumed; kept across a restart of the orchestrator."""
    return await _act(farm, body, "drain")


@router.post("/nodes/pause", response_model=NodeView)
async def pause(farm: FarmDep, body: NodeAction) -> dict[str, Any]:
    """The node stops now: its batches go back to the queue (no attempt counted, its Blender
    is stopped) and it takes no new ones (state `paused`) until it is resumed."""
    return await _act(farm, body, "pause")


@router.post("/nodes/resume", response_model=NodeView)
async def resume(farm: FarmDep, body: NodeAction) -> dict[str, Any]:
    """A drained or paused node takes batches again."""
    return await _act(farm, body, "resume")


@router.post("/nodes/leave", response_model=NodeView)
async def leave(farm: FarmDep, body: NodeAction, who: PrincipalDep) -> dict[str, Any]:
    """A node says it is going away (render-node does on SIGTERM): it is lost at once and its
    batches go back to the queue, without waiting for the loss timeout."""
    speaks_for(who, normalize_url(body.url))
    return await _act(farm, body, "leave")
