"""/nodes: the farm's render nodes, and their heartbeats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from farm_common.errors import BadRequest, NotFound, Unavailable
from farm_common.protocol import NodeRegistration, Registered
from orchestrator.api.deps import FarmDep
from orchestrator.api.models import NodeAction, NodeView
from orchestrator.runtime.loop_thread import BackendUnavailable
from orchestrator.scheduling.registry import BadNodeUrl, check_node_url, normalize_url

router = APIRouter()

# Heartbeats per loss timeout: a node is declared lost only after this many in a row are missed.
HEARTBEATS_PER_TIMEOUT = 3


@router.get("/nodes", response_model=list[NodeView])
async def list_nodes(farm: FarmDep) -> list[dict[str, Any]]:
    return await farm.link.nodes()


@router.post("/nodes/register", response_model=Registered)
async def register(farm: FarmDep, body: NodeRegistration) -> Registered:
    """A node's heartbeat. The answer says how often to send the next ones: the orchestrator's
    loss timeout decides that, not the node's own setting."""
    try:
        check_node_url(body.url)
    except BadNodeUrl as exc:
        raise BadRequest(f"{exc}: register the URL this node is reachable at") from None
    refused = await farm.link.register(body.model_dump())
    if refused is not None:
        raise Unavailable(refused)
    interval = farm.settings.node_timeout_seconds / HEARTBEATS_PER_TIMEOUT
    return Registered(heartbeat_seconds=round(interval, 3))


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
async def leave(farm: FarmDep, body: NodeAction) -> dict[str, Any]:
    """A node says it is going away (render-node does on SIGTERM): it is lost at once and its
    batches go back to the queue, without waiting for the loss timeout."""
    return await _act(farm, body, "leave")
