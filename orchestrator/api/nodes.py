"""/nodes: the farm's render nodes, and their heartbeats."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from farm_common.errors import BadRequest, Unavailable
from farm_common.protocol import NodeRegistration, Registered
from orchestrator.api.deps import FarmDep
from orchestrator.api.models import NodeView
from orchestrator.scheduling.registry import BadNodeUrl, check_node_url

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
