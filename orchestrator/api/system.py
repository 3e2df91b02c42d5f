"""/metrics (and /health, from farm_common)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from orchestrator.api.deps import FarmDep

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(farm: FarmDep) -> Response:
    """Prometheus metrics of the scheduler: frames, batches, nodes, queue."""
    text = await farm.link.metrics()
    return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")
