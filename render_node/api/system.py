"""/info and /metrics (and /health, from farm_common)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from farm_common.protocol import JobCounts, JobState, NodeInfo
from render_node import __version__
from render_node.api.deps import NodeDep, cpu_count
from render_node.devices import describe
from render_node.devices import kind as device_kind
from render_node.jobs import FINAL

router = APIRouter()


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics_text(node: NodeDep) -> PlainTextResponse:
    """Prometheus metrics: slots, busy slots, frames rendered/failed, frame seconds."""
    return PlainTextResponse(node.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get("/info", response_model=NodeInfo)
async def info(node: NodeDep) -> NodeInfo:
    manager = node.manager
    states = [job.state for job in manager.jobs.values()]
    return NodeInfo(
        version=__version__,
        blender_version=await manager.blender_version(),
        slots=manager.slot_count,
        busy=manager.busy,
        cpu_count=cpu_count(),
        threads=node.settings.threads,
        name=node.name,
        url=node.url,
        jobs=JobCounts(
            queued=states.count(JobState.QUEUED),
            running=states.count(JobState.RUNNING),
            finished=sum(1 for s in states if s in FINAL),
        ),
        sandbox=manager.options.sandbox.describe(),
        engine=manager.engine.name,
        devices=[describe(d) for d in manager.devices],
        device=device_kind(manager.devices),
        warm=manager.warm_sessions(),
    )
