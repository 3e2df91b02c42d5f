"""The orchestrator HTTP API: `create_app(settings)`, whose lifespan owns all the state."""

from __future__ import annotations

import logging
import math
import os
import signal
import time
import zipfile
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from pydantic import BaseModel, Field

from farm_common.auth import BearerTokenMiddleware
from farm_common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    TooManyRequests,
    Unavailable,
    binary_response,
    document_errors,
    error_body,
    install_error_handlers,
)
from farm_common.frames import FrameSpecError, parse_frame_spec
from farm_common.limits import BodyLimitMiddleware, RateLimiter, json_limit
from farm_common.paths import FrameNumber, JobId, check_job_id
from orchestrator.api import views
from orchestrator.dashboard.pages import dashboard_router, framemap, is_public_path
from orchestrator.renders import MEDIA_TYPES, SUFFIXES, output_path, output_suffix, video_path
from orchestrator.runtime.core import Core
from orchestrator.runtime.links import Link, ProcessLink, ThreadLink
from orchestrator.runtime.thread import EngineError
from orchestrator.scheduling.batching import auto_batch_size
from orchestrator.scheduling.policy import blender_matches
from orchestrator.scheduling.registry import BadNodeUrl, check_node_url
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import Store
from orchestrator.store.scenes import resolve_scene, save_upload

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 2


class RenderRequest(BaseModel):
    scene: str = Field(
        min_length=1,
        max_length=300,
        description="sha256:<hex> of an upload (POST /scenes), or a .blend under --scenes-dir",
        examples=["demo.blend"],
    )
    frames: str = Field(min_length=1, max_length=10_000, examples=["1-24"])
    batch_size: int | None = Field(default=None, ge=1, le=10_000)
    format: str = "PNG"
    priority: int = Field(default=0, ge=-1000, le=1000)
    video: bool = False
    blender_version: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+){0,2}$",
        description="render only on nodes running this Blender: '4.2' takes 4.2.x nodes, "
        "'4.2.1' only those (default: any node; GET /render/ID shows the versions used)",
        examples=["4.2"],
    )


class NodeRegistration(BaseModel):
    url: str = Field(min_length=1, max_length=500, examples=["http://10.0.0.5:8100"])
    slots: int = Field(default=1, ge=1, le=1024)
    busy: int = Field(default=0, ge=0, le=1024)
    version: str | None = Field(default=None, max_length=100)
    blender_version: str | None = Field(default=None, max_length=100)
    cpu_count: int | None = Field(default=None, ge=0, le=1_000_000)
    name: str | None = Field(default=None, max_length=200)
    instance: str | None = Field(
        default=None, max_length=100, description="the node process, new at every start"
    )


def check_blender_version(wanted: str, versions: dict[str, str | None]) -> None:
    """409 when the farm knows nodes but none of them runs the Blender a job asks for (a typo,
    or the wrong farm); a farm with no nodes yet takes the job, to wait for them."""
    known = [v for v in versions.values() if v]
    if not known or any(blender_matches(v, wanted) for v in known):
        return
    counts = ", ".join(f"{v} ({known.count(v)})" for v in sorted(set(known)))
    raise Conflict(
        f"no node runs Blender {wanted}: the nodes run {counts}. Ask for one of those "
        "versions, leave blender_version out to use any node, or start nodes with that Blender"
    )


@dataclass
class Farm:
    settings: OrchestratorSettings
    store: Store
    link: Link  # the scheduler's side: on a thread of this process, or a process of its own
    clock: Callable[[], float]


def create_app(
    settings: OrchestratorSettings | None = None,
    *,
    clock: Callable[[], float] = time.time,
    monotonic: Callable[[], float] = time.monotonic,
    engine_process: bool = False,
    log_level: str = "info",
) -> FastAPI:
    """The orchestrator app.

    `engine_process`: run the scheduler in a child process (links.ProcessLink, what the
    `orchestrator` command does), not on a thread of this one; it takes the real clocks and
    network, and logs at `log_level`."""
    settings = settings or OrchestratorSettings()
    upload_limit = (settings.max_upload_mb << 20) + 65536  # multipart framing on top
    rate_limiter = (
        RateLimiter(settings.rate_limit, clock=monotonic) if settings.rate_limit else None
    )

    def body_limit(method: str, path: str) -> tuple[int, str] | None:
        if method == "POST" and path == "/scenes":
            return upload_limit, (
                f"upload is larger than {settings.max_upload_mb} MB, the largest scene this farm "
                "takes (--max-upload-mb / FARM_MAX_UPLOAD_MB): pack less, or raise the limit"
            )
        return json_limit(method, path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.renders_dir.mkdir(parents=True, exist_ok=True)
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_path)  # first: a data folder is migrated before the child runs
        app.state.exit_code = 0

        def engine_ended(code: int) -> None:
            # Nothing would be scheduled any more: stop serving, and exit with an error.
            app.state.exit_code = 1
            stop_server = getattr(app.state, "stop_server", None)  # set by orchestrator.cli
            if stop_server is not None:
                stop_server()
            else:
                os.kill(os.getpid(), signal.SIGTERM)

        link: Link
        try:
            if engine_process:
                link = await ProcessLink.start(settings, log_level, engine_ended)
            else:
                link = await ThreadLink.start(
                    lambda: Core.start(settings, store, clock=clock, monotonic=monotonic)
                )
        except BaseException:
            store.close()
            raise
        app.state.farm = Farm(settings, store, link, clock)
        log.info("orchestrator up; data in %s", settings.data_dir)
        try:
            yield
        finally:
            await link.aclose()
            store.close()
            log.info("orchestrator stopped")

    app = FastAPI(title="Render farm orchestrator", lifespan=lifespan)
    install_error_handlers(app)

    @app.exception_handler(EngineError)
    async def _engine_down(request: Request, exc: EngineError) -> Response:
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse(
            error_body(
                "unavailable",
                f"the scheduler is not answering ({exc}): retry; if it goes on, restart the "
                "orchestrator (unfinished jobs go on where they were)",
            ),
            status_code=503,
            headers={"Retry-After": "5"},
        )

    document_errors(app)

    def farm_of(request: Request) -> Farm:
        farm: Farm = request.app.state.farm
        return farm

    async def get_job_or_404(farm: Farm, job_id: str) -> Any:
        check_job_id(job_id)
        job = await farm.store.run(farm.store.get_job, job_id)
        if job is None:
            raise NotFound(f"no render job {job_id!r}: see GET /render for the list")
        return job

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/scenes", status_code=201)
    async def upload_scene(request: Request, file: UploadFile = File(...)) -> dict[str, Any]:
        # An oversize body never gets here: BodyLimitMiddleware counts it as it streams in.
        farm = farm_of(request)
        sha = await save_upload(
            file, farm.store, settings.uploads_dir, settings.max_upload_mb << 20
        )
        log.info("scene sha256:%s uploaded (%r)", sha, file.filename)
        return {"scene": f"sha256:{sha}", "name": file.filename}

    @app.post("/render", status_code=202)
    async def submit(request: Request, body: RenderRequest) -> dict[str, Any]:
        farm = farm_of(request)
        if rate_limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait = rate_limiter.check(client)
            if wait > 0:
                raise TooManyRequests(
                    f"more than {settings.rate_limit:g} jobs a minute from {client} "
                    f"(--rate-limit): retry in {math.ceil(wait)} s",
                    headers={"Retry-After": str(math.ceil(wait))},
                )
        fmt = body.format.upper()
        if fmt not in SUFFIXES:
            raise BadRequest(f"format {body.format!r} is not one of {', '.join(SUFFIXES)}")
        try:
            frames = parse_frame_spec(body.frames)
        except FrameSpecError as exc:
            raise BadRequest(str(exc)) from exc
        sha = await resolve_scene(body.scene, farm.store, settings.scenes_dir)
        facts = await farm.link.facts()
        if body.blender_version:
            check_blender_version(body.blender_version, facts.blender_versions)
        size = body.batch_size or auto_batch_size(
            len(frames), facts.total_slots, settings.max_batch_size
        )

        def create() -> Any:
            # Counted and created in one go on the store's thread: no race past the limit.
            if farm.store.count_unfinished_jobs() >= settings.max_queued_jobs:
                return None
            return farm.store.create_job(
                scene=body.scene, scene_sha=sha, frames_spec=body.frames, frames=frames,
                fmt=fmt, priority=body.priority, batch_size=size, video=body.video,
                now=farm.clock(), adaptive=body.batch_size is None,
                blender_version=body.blender_version,
            )  # fmt: skip

        created = await farm.store.run(create)
        if created is None:
            raise TooManyRequests(
                f"the farm already has {settings.max_queued_jobs} jobs queued or running "
                "(--max-queued-jobs): wait for some to finish, or cancel some (DELETE /render/ID)",
                headers={"Retry-After": "30"},
            )
        job, batches = created
        try:
            await farm.link.enqueue(job, batches)
        except EngineError as exc:
            raise Unavailable(
                f"job {job.id} is saved, but the scheduler did not confirm it ({exc}): see "
                f"GET /render/{job.id} before submitting it again; restarting the orchestrator "
                "queues it for sure",
                headers={"Retry-After": "5"},
            ) from None
        return {
            "id": job.id,
            "status_url": f"/render/{job.id}",
            "state": job.state,
            "frames": len(frames),
            "batch_size": size,
        }

    @app.get("/render")
    async def list_jobs(request: Request) -> list[dict[str, Any]]:
        farm = farm_of(request)
        jobs = await farm.store.run(farm.store.list_jobs, 200)
        now = farm.clock()
        return [views.job_summary(j, now) for j in jobs]

    @app.get("/render/{job_id}")
    async def job_status(request: Request, job_id: JobId) -> Response:
        farm = farm_of(request)
        check_job_id(job_id)
        # One read, on the reader connection: status polls never wait behind frame writes.
        found = await farm.store.read(lambda store: store.job_view(job_id))
        if found is None:
            raise NotFound(f"no render job {job_id!r}: see GET /render for the list")
        job, batches_json, nodes, failed = found
        versions = (await farm.link.facts()).blender_versions
        detail = views.job_detail(job, farm.clock(), nodes, failed, versions)
        detail["video_requested"] = bool(job.video)
        detail["video"] = video_path(settings.renders_dir, job_id).is_file()
        if detail["video"]:
            detail["video_url"] = f"/render/{job_id}/video.mp4"
        # Built here, not by FastAPI's encoder: that would walk every batch of a
        # 100,000-frame job again (~3/4 of the request's time, measured by benchmarks/scale).
        return Response(views.job_detail_body(detail, batches_json), media_type="application/json")

    @app.delete("/render/{job_id}")
    async def cancel(request: Request, job_id: JobId) -> dict[str, Any]:
        farm = farm_of(request)
        await get_job_or_404(farm, job_id)
        await farm.link.cancel(job_id)
        job = await get_job_or_404(farm, job_id)
        return views.job_summary(job, farm.clock())

    @app.get(
        "/render/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses={200: binary_response("a collected frame", sorted(set(MEDIA_TYPES.values())))},
    )
    async def frame_file(request: Request, job_id: JobId, frame: FrameNumber) -> FileResponse:
        farm = farm_of(request)
        job = await get_job_or_404(farm, job_id)
        state = await farm.store.run(farm.store.frame_state, job_id, frame)
        if state is None:
            raise NotFound(f"frame {frame} is not part of job {job_id} ({job.frames_spec})")
        suffix = output_suffix(job.format)
        path = output_path(settings.renders_dir, job_id, frame, suffix)
        if state != "done" or not path.is_file():
            raise NotFound(f"frame {frame} of job {job_id} is not collected yet (it is {state})")
        media_type = MEDIA_TYPES.get(suffix, "application/octet-stream")
        return FileResponse(path, media_type=media_type, filename=path.name)

    @app.get("/render/{job_id}/frames")
    async def frame_states(
        request: Request, job_id: JobId, state: str | None = None
    ) -> dict[str, Any]:
        """Per-frame states (pending|rendering|done|failed), optionally one state only."""
        farm = farm_of(request)
        await get_job_or_404(farm, job_id)
        if state is not None and state not in ("pending", "rendering", "done", "failed"):
            raise BadRequest(f"state {state!r}: use pending, rendering, done or failed")
        frames = await farm.store.run(farm.store.frame_list, job_id, state)
        return {"id": job_id, "frames": frames}

    @app.get(
        "/render/{job_id}/frames.zip",
        response_class=StreamingResponse,
        responses={200: binary_response("every collected frame", ["application/zip"])},
    )
    async def frames_zip(request: Request, job_id: JobId) -> StreamingResponse:
        farm = farm_of(request)
        job = await get_job_or_404(farm, job_id)
        frames = await farm.store.run(farm.store.done_frames, job_id)
        suffix = output_suffix(job.format)
        paths = [output_path(settings.renders_dir, job_id, f, suffix) for f in frames]
        return StreamingResponse(
            _zip_stream(paths),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-frames.zip"'},
        )

    @app.get("/render/{job_id}/framemap")
    async def frame_map(request: Request, job_id: JobId) -> dict[str, Any]:
        """Every frame's state in one compact string (for the dashboard's frame grid)."""
        farm = farm_of(request)
        await get_job_or_404(farm, job_id)
        frames, states = await farm.store.run(farm.store.frame_states, job_id)
        return framemap(frames, states)

    @app.get(
        "/render/{job_id}/video.mp4",
        response_class=FileResponse,
        responses={200: binary_response("the preview video", ["video/mp4"])},
    )
    async def video(request: Request, job_id: JobId) -> FileResponse:
        farm = farm_of(request)
        job = await get_job_or_404(farm, job_id)
        path = video_path(settings.renders_dir, job_id)
        if not path.is_file():
            why = 'it was not asked for ("video": true)' if not job.video else "it is not ready"
            raise NotFound(f"no preview video for job {job_id}: {why}")
        return FileResponse(path, media_type="video/mp4", filename=f"{job_id}.mp4")

    @app.get("/nodes")
    async def list_nodes(request: Request) -> list[dict[str, Any]]:
        return await farm_of(request).link.nodes()

    @app.post("/nodes/register")
    async def register(request: Request, body: NodeRegistration) -> dict[str, Any]:
        farm = farm_of(request)
        try:
            check_node_url(body.url)
        except BadNodeUrl as exc:
            raise BadRequest(f"{exc}: register the URL this node is reachable at") from None
        await farm.link.register(body.model_dump())
        return {"ok": True, "heartbeat_seconds": HEARTBEAT_SECONDS}

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(request: Request) -> Response:
        text = await farm_of(request).link.metrics()
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.include_router(dashboard_router(settings.token))
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    # Outermost: nothing (not /docs, not a 404, not a body) is read before the token is checked.
    app.add_middleware(BearerTokenMiddleware, token=settings.token, is_open=is_open_path)
    return app


def is_open_path(path: str) -> bool:
    """/health, and the dashboard's shells and static files (they hold no data)."""
    return path == "/health" or is_public_path(path)


class _Pipe:
    """A write-only file for ZipFile that hands out what was written (zip streams unseekable)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def _zip_stream(paths: list[Path]) -> Iterator[bytes]:
    # Sync generator: Starlette runs it in a thread, so file reads stay off the event loop.
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_STORED) as zf:  # type: ignore[call-overload]
        for path in paths:
            if path.is_file():
                zf.write(path, path.name)
                yield pipe.take()
    yield pipe.take()
