"""What the node's routers depend on: its parts, made by `create_app`, and job lookups."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from farm_common.errors import NotFound
from farm_common.paths import check_job_id
from render_node.files import FileStore
from render_node.jobs import Job, JobManager
from render_node.metrics import NodeMetrics
from render_node.scenes import SceneStore
from render_node.settings import NodeSettings


def cpu_count() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass
class Node:
    settings: NodeSettings
    manager: JobManager
    store: SceneStore
    metrics: NodeMetrics
    url: str  # as the orchestrator reaches it (worked out again on heartbeats, see app.py)
    files: FileStore
    # What each scene file's Output properties say (api/jobs.py output_format).
    scene_formats: dict[Any, str] = field(default_factory=dict)
    name: str = field(default_factory=socket.gethostname)
    # Which process this is: the orchestrator keeps one entry per node even when its address
    # changes between heartbeats (orchestrator/scheduling/registry.py).
    instance: str = field(default_factory=lambda: secrets.token_hex(8))


def get_node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


NodeDep = Annotated[Node, Depends(get_node)]


def file_store(request: Request) -> FileStore:
    """The node's store of packed shots' files (for farm_common.blob_api)."""
    store: FileStore = request.app.state.node.files
    return store


def get_job(node: Node, job_id: str) -> Job:
    """Called in the handler, after FastAPI has checked every parameter: a bad one is a 422
    whatever the job."""
    job = node.manager.jobs.get(check_job_id(job_id))
    if job is None:
        raise NotFound(f"no job {job_id!r} on this node (GET /jobs lists them)")
    return job
