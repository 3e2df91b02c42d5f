"""The render node's HTTP API: `create_app(settings)` builds it; the lifespan owns the job
manager (and with it every Blender process) and the orchestrator heartbeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST

from farm_common.auth import BearerTokenMiddleware
from farm_common.errors import (
    BadRequest,
    Conflict,
    ErrorBody,
    NotFound,
    PayloadTooLarge,
    binary_response,
    document_errors,
    install_error_handlers,
)
from farm_common.frames import FrameSpecError, compact_frames, parse_frame_spec
from farm_common.limits import BodyLimitMiddleware, json_limit
from farm_common.paths import FrameNumber, JobId, Sha256, check_job_id, check_sha256
from farm_common.protocol import (
    ARCHIVE_MEDIA_TYPE,
    FORMATS,
    MAX_ARCHIVE_FRAMES,
    MAX_WAIT_SECONDS,
    FrameState,
    Health,
    JobCreated,
    JobDeleted,
    JobDetail,
    JobList,
    JobRequest,
    JobState,
    NodeInfo,
    SceneStored,
    frame_name,
    image_format,
)
from render_node import __version__
from render_node.archive import archive_size, stat_members, stream_archive
from render_node.jobs import FINAL, BlenderOptions, Job, JobManager
from render_node.metrics import NodeMetrics
from render_node.registration import default_advertise_url, heartbeat_loop
from render_node.scenes import SceneStore
from render_node.settings import NodeSettings

log = logging.getLogger(__name__)

WAIT_DOC = "with `since`: answer once the version differs from it, or after this many seconds"


def image_types() -> list[str]:
    return sorted({f.content_type for f in FORMATS.values()})


def cpu_count() -> int:
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def create_app(settings: NodeSettings, *, environ: dict[str, str] | None = None) -> FastAPI:
    """`environ` is the environment Blender runs with (default: the node's own)."""
    data_dir = settings.resolved_data_dir.resolve()
    manager = JobManager(
        data_dir=data_dir,
        blender=settings.blender,
        slots=settings.slots,
        environ=dict(os.environ) if environ is None else environ,
        options=BlenderOptions(
            threads=settings.threads,
            frame_timeout=settings.frame_timeout,
            allow_freestyle=settings.allow_freestyle,
            memory_limit_mb=settings.memory_limit_mb,
            log_lines=settings.log_lines,
            version_timeout=settings.version_timeout,
        ),
        on_finished=lambda job: metrics.record(job.batch),
    )
    metrics = NodeMetrics(settings.slots, lambda: manager.busy)
    store = SceneStore(
        data_dir / "scenes", settings.scenes_dir.resolve(), settings.max_upload_bytes
    )
    # Without --advertise-url the address is worked out again on every heartbeat: in a Swarm the
    # orchestrator's name may not resolve yet when the node starts, and a restarted container
    # can come back with another IP.
    advertised = {
        "url": settings.advertise_url
        or default_advertise_url(settings.host, settings.port, settings.orchestrator)
    }
    hostname = socket.gethostname()
    # Which process this is: the orchestrator keeps one entry per node even when its address
    # changes between heartbeats (see orchestrator/registry.py).
    instance = secrets.token_hex(8)

    async def registration() -> dict[str, Any]:
        if not settings.advertise_url:
            advertised["url"] = await asyncio.to_thread(
                default_advertise_url, settings.host, settings.port, settings.orchestrator
            )
        return {
            "url": advertised["url"],
            "slots": settings.slots,
            "busy": manager.busy,
            "version": __version__,
            "blender_version": await manager.blender_version(),
            "cpu_count": cpu_count(),
            "name": hostname,
            "instance": instance,
        }

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        await asyncio.to_thread(store.remove_partial_uploads)
        background = [asyncio.create_task(manager.blender_version(), name="blender-version")]
        if settings.orchestrator:
            background.append(
                asyncio.create_task(
                    heartbeat_loop(
                        settings.orchestrator,
                        registration,
                        token=settings.token,
                        interval=settings.heartbeat_seconds,
                    ),
                    name="heartbeat",
                )
            )
        log.info("render node up: %s, data in %s", advertised["url"], data_dir)
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            await manager.shutdown()
            log.info("render node stopped: no Blender left running")

    app = FastAPI(
        title="Blender farm render node",
        version=__version__,
        lifespan=lifespan,
    )

    def body_limit(method: str, path: str) -> tuple[int, str] | None:
        if method == "PUT" and path.startswith("/scenes/"):
            return store.max_bytes, (
                f"upload is larger than this node's limit of "
                f"{store.max_bytes // (1024 * 1024)} MB (--max-upload-mb)"
            )
        return json_limit(method, path)

    install_error_handlers(app)
    document_errors(app)
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.add_middleware(BearerTokenMiddleware, token=settings.token)  # outermost: first
    app.state.manager = manager
    app.state.store = store
    app.state.settings = settings

    def find_job(job_id: str) -> Job:
        job = manager.jobs.get(check_job_id(job_id))
        if job is None:
            raise NotFound(f"no job {job_id!r} on this node (GET /jobs lists them)")
        return job

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health()

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics_text() -> PlainTextResponse:
        """Prometheus metrics: slots, busy slots, frames rendered/failed, frame seconds."""
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/info", response_model=NodeInfo)
    async def info() -> dict[str, Any]:
        states = [job.state for job in manager.jobs.values()]
        return {
            "version": __version__,
            "blender_version": await manager.blender_version(),
            "slots": settings.slots,
            "busy": manager.busy,
            "cpu_count": cpu_count(),
            "threads": settings.threads,
            "name": hostname,
            "url": advertised["url"],
            "jobs": {
                "queued": states.count(JobState.QUEUED),
                "running": states.count(JobState.RUNNING),
                "finished": sum(1 for s in states if s in FINAL),
            },
        }

    @app.post("/jobs", status_code=202, response_model=JobCreated)
    async def submit(body: JobRequest) -> JobCreated:
        try:
            frames = parse_frame_spec(body.frames)
        except FrameSpecError as exc:
            raise BadRequest(str(exc)) from None
        fmt = image_format(body.format)
        path = store.resolve(body.scene)
        job = manager.submit(body.scene, path, frames, fmt)
        return JobCreated(
            id=job.id, state=job.state, status_url=f"/jobs/{job.id}", version=job.version()
        )

    @app.get("/jobs", response_model=JobList, response_model_exclude_none=True)
    async def list_jobs() -> dict[str, Any]:
        return {"jobs": [job.summary() for job in manager.jobs.values()]}

    @app.get("/jobs/{job_id}", response_model=JobDetail, response_model_exclude_none=True)
    async def job_status(
        job_id: JobId,
        wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description=WAIT_DOC)] = 0,
        since: Annotated[str | None, Query(max_length=100)] = None,
    ) -> dict[str, Any]:
        job = find_job(job_id)
        if since is not None and wait > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await job.wait_for_change(since)
        return job.detail()

    @app.delete("/jobs/{job_id}", response_model=JobDeleted)
    async def delete_job(job_id: JobId) -> dict[str, Any]:
        """Cancel a queued or running job (Blender gone within 2 s); remove a finished one."""
        job = find_job(job_id)
        if job.state not in FINAL:
            await manager.cancel(job)
            return {"id": job.id, "state": job.state, "removed": False}
        await manager.remove(job)
        return {"id": job.id, "state": job.state, "removed": True}

    @app.get(
        "/jobs/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses={200: binary_response("the rendered frame", image_types())},
    )
    async def frame_image(job_id: JobId, frame: FrameNumber) -> FileResponse:
        job = find_job(job_id)
        record = job.batch.frames.get(frame)
        if record is None:
            raise NotFound(f"frame {frame} is not part of job {job.id}")
        path = job.frame_file(frame)
        if path is None or not path.is_file():
            raise NotFound(f"frame {frame} of job {job.id} is not rendered ({record.state})")
        return FileResponse(path, media_type=job.fmt.content_type, filename=path.name)

    @app.get(
        "/jobs/{job_id}/frames.tar",
        response_class=StreamingResponse,
        responses={
            200: binary_response(
                "an uncompressed tar of the frames' images, named frame_00003.png...; a done "
                "frame whose file cannot be read is left out",
                [ARCHIVE_MEDIA_TYPE],
            ),
            409: {"description": "a frame of the spec is not done (yet)", "model": ErrorBody},
        },
    )
    async def frames_archive(
        job_id: JobId,
        frames: str = Query(
            description=f"frame spec of done frames: '3-7,9'; at most {MAX_ARCHIVE_FRAMES}",
            examples=["1-3"],
            max_length=16 * MAX_ARCHIVE_FRAMES,
        ),
    ) -> StreamingResponse:
        """Several finished frames in one answer, streamed: what the orchestrator collects a
        poll's worth of frames with. 400 for a bad spec, more than the cap or frames that are
        not the job's; 409 when one is not done."""
        job = find_job(job_id)
        try:
            wanted = parse_frame_spec(frames)
        except FrameSpecError as exc:
            raise BadRequest(str(exc)) from None
        if len(wanted) > MAX_ARCHIVE_FRAMES:
            raise BadRequest(
                f"{len(wanted)} frames asked for: at most {MAX_ARCHIVE_FRAMES} per archive, "
                "ask in parts"
            )
        foreign = [f for f in wanted if f not in job.batch.frames]
        if foreign:
            raise BadRequest(f"frames {compact_frames(foreign)} are not part of job {job.id}")
        waiting = [f for f in wanted if job.batch.frames[f].state != FrameState.DONE]
        if waiting:
            raise Conflict(
                f"frames {compact_frames(waiting)} of job {job.id} are not done: ask for done "
                f"frames only (GET /jobs/{job.id} has each frame's state)"
            )
        files = [(f, job.frame_file(f)) for f in wanted]
        named = [(frame_name(f, path.suffix), path) for f, path in files if path is not None]
        members = await asyncio.to_thread(stat_members, named)
        return StreamingResponse(
            stream_archive(members),
            media_type=ARCHIVE_MEDIA_TYPE,
            headers={
                "Content-Length": str(archive_size(members)),
                "Content-Disposition": f'attachment; filename="{job.id}-frames.tar"',
            },
        )

    @app.get("/jobs/{job_id}/log", response_class=PlainTextResponse)
    async def job_log(job_id: JobId) -> PlainTextResponse:
        job = find_job(job_id)
        return PlainTextResponse("\n".join(job.log_tail) + "\n")

    @app.put("/scenes/{sha256}", status_code=201, response_model=SceneStored)
    async def upload_scene(sha256: Sha256, request: Request) -> SceneStored:
        sha = check_sha256(sha256)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > store.max_bytes:
            # Refused before reading; without the header the bytes are counted as they come.
            raise PayloadTooLarge(
                f"upload of {int(declared) // (1024 * 1024)} MB is larger than this node's "
                f"limit of {store.max_bytes // (1024 * 1024)} MB (--max-upload-mb)"
            )
        size = await store.save(sha, request.stream())
        return SceneStored(scene=f"sha256:{sha}", size=size)

    @app.head("/scenes/{sha256}")
    async def has_scene(sha256: Sha256) -> Response:
        if not store.has(check_sha256(sha256)):
            return Response(status_code=404)
        return Response(status_code=200)

    return app
