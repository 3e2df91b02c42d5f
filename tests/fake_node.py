"""A fake render node: the node HTTP API in-process, rendering nothing, with controllable faults.

It speaks the render-node contract of farm_common.protocol (its answers are those models;
tests/integration/test_fake_node_contract.py holds it against the real node's OpenAPI schema)
and serves small generated PNGs, so the orchestrator can be tested without Blender or node
processes, and a 100-node farm fits in one process for scale benchmarks:

    nodes = [FakeNode(f"n{i}", slots=2, seconds_per_frame=0.01) for i in range(100)]
    with serve_in_thread(fake_farm_app(nodes)) as base:   # node i is at f"{base}/n/{i}"
        ...

Knobs per node: `slots`, `startup` (seconds per batch), `seconds_per_frame`, `fail_frames`
(frames reported failed with an `Error:` text), `refuse` (every batch fails with this reason
as the job's `refused`, like a node refusing a Freestyle scene), `frozen` (every request
hangs, like SIGSTOP), `blender_version`, `token` (bearer token required when set),
`scene_check_seconds` (HEAD /scenes answers that late), `withhold` (frame -> how many more
times a done frame is not served: left out of archives). `rendered` lists every frame the node
rendered, in order, to prove no frame was rendered twice; `polls` every status request (job,
`since`); `requests` every request (unix time, "METHOD /path"); `archives` counts
frames.tar answers; `batches` the jobs submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from farm_common.frames import FrameSpecError, parse_frame_spec
from farm_common.protocol import (
    ARCHIVE_MEDIA_TYPE,
    FINAL_JOB_STATES,
    MAX_ARCHIVE_FRAMES,
    MAX_WAIT_SECONDS,
    FilesMissing,
    FileStored,
    FilesWanted,
    FrameCounts,
    FrameState,
    FrameStatus,
    Health,
    JobCounts,
    JobCreated,
    JobDeleted,
    JobDetail,
    JobRequest,
    JobState,
    NodeInfo,
    SceneStored,
    frame_name,
)
from render_node.archive import END, padding, tar_header
from tests.fake_blender import png_bytes


@dataclass
class FakeJob:
    id: str
    scene: str
    format: str
    frames: list[int]
    created: float = field(default_factory=time.time)
    state: JobState = JobState.QUEUED
    frame_states: dict[int, FrameState] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    refused: str | None = None

    def version(self) -> str:
        """As a real node's: changes when the job's state changes or one of its frames ends."""
        states = list(self.frame_states.values())
        return f"{self.state}/{states.count(FrameState.DONE)}/{states.count(FrameState.FAILED)}"

    def detail(self, seconds_per_frame: float) -> JobDetail:
        frames = [
            FrameStatus(
                frame=f,
                state=self.frame_states[f],
                error=self.errors.get(f),
                seconds=seconds_per_frame if self.frame_states[f] == FrameState.DONE else None,
            )
            for f in self.frames
        ]
        counts = {state: 0 for state in FrameState}
        for state in self.frame_states.values():
            counts[state] += 1
        ended = counts[FrameState.DONE] + counts[FrameState.FAILED]
        return JobDetail(
            id=self.id,
            state=self.state,
            scene=self.scene,
            format=self.format,
            counts=FrameCounts(total=len(self.frames), **counts),
            progress=ended / len(self.frames),
            error=next(iter(self.errors.values()), None),
            refused=self.refused,
            created=self.created,
            frames=frames,
            version=self.version(),
        )


@dataclass
class FakeNode:
    name: str
    slots: int = 2
    startup: float = 0.0
    seconds_per_frame: float = 0.01
    fail_frames: set[int] = field(default_factory=set)
    # Like a real node refusing a Freestyle scene: every batch fails at once with this reason.
    refuse: str | None = None
    batches: int = 0  # jobs submitted to this node
    frozen: bool = False
    blender_version: str = "4.2.0"
    token: str | None = None
    withhold: dict[int, int] = field(default_factory=dict)
    scene_check_seconds: float = 0.0  # HEAD /scenes answers after this long (a slow disk)
    polls: list[tuple[str, str | None]] = field(default_factory=list)  # (job, since) each poll
    requests: list[tuple[float, str]] = field(default_factory=list)  # (unix time, "GET /info")
    rendered: list[int] = field(default_factory=list)
    archives: int = 0
    scenes: set[str] = field(default_factory=set)
    scene_puts: int = 0
    scene_heads: int = 0
    # Scenes it holds by name (a shared scenes folder): others are 404, as on a real node.
    named_scenes: set[str] = field(default_factory=set)
    files: dict[str, int] = field(default_factory=dict)  # sha256 -> size, pushed by PUT /files
    file_puts: int = 0
    manifests: list[dict[str, str]] = field(default_factory=list)  # of jobs submitted
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    _slot_lock: asyncio.Semaphore | None = field(default=None, repr=False)

    def serves(self, frame: int) -> bool:
        """Whether a done frame is served now (`withhold` hides it a number of times)."""
        left = self.withhold.get(frame, 0)
        if left > 0:
            self.withhold[frame] = left - 1
            return False
        return True

    @property
    def busy(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state not in FINAL_JOB_STATES)

    async def _render(self, job: FakeJob) -> None:
        # Like a real node: a job waits, queued, until one of the node's slots is free.
        if self._slot_lock is None:
            self._slot_lock = asyncio.Semaphore(self.slots)
        async with self._slot_lock:
            job.state = JobState.RUNNING
            await asyncio.sleep(self.startup)
            if self.refuse:
                for frame in job.frames:
                    job.frame_states[frame] = FrameState.FAILED
                    job.errors[frame] = self.refuse
                job.refused, job.state = self.refuse, JobState.FAILED
                return
            for frame in job.frames:
                job.frame_states[frame] = FrameState.RENDERING
                await asyncio.sleep(self.seconds_per_frame)
                if frame in self.fail_frames:
                    job.frame_states[frame] = FrameState.FAILED
                    job.errors[frame] = (
                        f"Error: CUDA error: Out of memory (frame {frame}, {self.name})"
                    )
                else:
                    job.frame_states[frame] = FrameState.DONE
                    self.rendered.append(frame)
            job.state = JobState.FAILED if job.errors else JobState.COMPLETED


class _Faults:
    """`frozen` and `token`, as plain ASGI: Starlette's `@app.middleware("http")` costs a task
    and a memory stream a request, most of the CPU of a 100-node fake farm."""

    def __init__(self, app: ASGIApp, node: FakeNode) -> None:
        self.app = app
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"].removeprefix(scope.get("root_path", ""))
            self.node.requests.append((time.time(), f"{scope['method']} {path}"))
            while self.node.frozen:  # noqa: ASYNC110 - flipped from the test thread, like SIGSTOP
                await asyncio.sleep(0.05)
            token = self.node.token
            if token and path != "/health":
                given = dict(scope["headers"]).get(b"authorization", b"")
                if given != f"Bearer {token}".encode():
                    refusal = JSONResponse({"error": "unauthorized", "detail": "token"}, 401)
                    await refusal(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_fake_node_app(node: FakeNode) -> FastAPI:
    app = FastAPI(title=f"fake node {node.name}")
    app.add_middleware(_Faults, node=node)

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        return Health()

    @app.get("/info", response_model=NodeInfo)
    async def info() -> NodeInfo:
        states = [j.state for j in node.jobs.values()]
        return NodeInfo(
            version="fake",
            blender_version=node.blender_version,
            slots=node.slots,
            busy=node.busy,
            cpu_count=2,
            threads=0,
            name=node.name,
            url=f"fake://{node.name}",
            jobs=JobCounts(
                queued=states.count(JobState.QUEUED),
                running=states.count(JobState.RUNNING),
                finished=sum(1 for s in states if s in FINAL_JOB_STATES),
            ),
        )

    @app.head("/scenes/{sha256}")
    async def head_scene(sha256: str) -> Response:
        await asyncio.sleep(node.scene_check_seconds)
        node.scene_heads += 1
        return Response(status_code=200 if sha256 in node.scenes else 404)

    @app.put("/scenes/{sha256}", status_code=201, response_model=SceneStored)
    async def put_scene(sha256: str, request: Request) -> Any:
        digest = hashlib.sha256()
        size = 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        if digest.hexdigest() != sha256:
            return JSONResponse({"error": "bad_request", "detail": "hash mismatch"}, 400)
        node.scenes.add(sha256)
        node.scene_puts += 1
        return SceneStored(scene=f"sha256:{sha256}", size=size)

    @app.head("/files/{sha256}")
    async def head_file(sha256: str) -> Response:
        return Response(status_code=200 if sha256 in node.files else 404)

    @app.put("/files/{sha256}", status_code=201, response_model=FileStored)
    async def put_file(sha256: str, request: Request) -> Any:
        body = await request.body()
        if hashlib.sha256(body).hexdigest() != sha256:
            return JSONResponse({"error": "bad_request", "detail": "hash mismatch"}, 400)
        new = sha256 not in node.files
        node.files[sha256] = len(body)
        node.file_puts += 1
        return FileStored(sha256=sha256, size=len(body), new=new)

    @app.post("/files/missing", response_model=FilesMissing)
    async def missing_files(body: FilesWanted) -> FilesMissing:
        return FilesMissing(missing=[sha for sha in body.files if sha not in node.files])

    @app.post("/jobs", status_code=202, response_model=JobCreated)
    async def submit(body: JobRequest) -> Any:
        if body.manifest is not None:
            lacking = body.manifest.blobs() - set(node.files)
            if lacking:
                detail = f"this node lacks {len(lacking)} file(s) of the manifest"
                return JSONResponse({"error": "not_found", "detail": detail}, 404)
            node.manifests.append(body.manifest.files)
            scene = body.manifest.main
        else:
            scene = body.scene or ""
        if scene.startswith("sha256:") and scene[7:] not in node.scenes:
            return JSONResponse({"error": "not_found", "detail": f"unknown scene {scene}"}, 404)
        if body.scene and not scene.startswith("sha256:") and scene not in node.named_scenes:
            return JSONResponse({"error": "not_found", "detail": f"no scene {scene!r}"}, 404)
        fmt = body.format or "PNG"
        job = FakeJob(uuid.uuid4().hex[:12], scene, fmt, parse_frame_spec(body.frames))
        job.frame_states = dict.fromkeys(job.frames, FrameState.PENDING)
        node.jobs[job.id] = job
        node.batches += 1
        job.task = asyncio.create_task(node._render(job))
        return JobCreated(
            id=job.id, state=job.state, status_url=f"/jobs/{job.id}", version=job.version()
        )

    @app.get("/jobs/{job_id}", response_model=JobDetail, response_model_exclude_none=True)
    async def status(job_id: str, wait: float = 0.0, since: str | None = None) -> Any:
        job = node.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "not_found", "detail": "no such job"}, 404)
        node.polls.append((job_id, since))
        # Held like a real node's answer: until the job changes, or `wait` seconds.
        deadline = time.monotonic() + min(wait, MAX_WAIT_SECONDS)
        while since is not None and job.version() == since and job.state not in FINAL_JOB_STATES:
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.02)
        return job.detail(node.seconds_per_frame)

    @app.delete("/jobs/{job_id}", response_model=JobDeleted)
    async def delete(job_id: str) -> Any:
        job = node.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "not_found", "detail": "no such job"}, 404)
        if job.task and not job.task.done():
            job.task.cancel()
            job.state = JobState.CANCELLED
            return JobDeleted(id=job_id, state=job.state, removed=False)
        del node.jobs[job_id]
        return JobDeleted(id=job_id, state=job.state, removed=True)

    @app.get("/jobs/{job_id}/frames/{frame}")
    async def frame(job_id: str, frame: int) -> Response:
        job = node.jobs.get(job_id)
        if job is None or job.frame_states.get(frame) != FrameState.DONE or not node.serves(frame):
            return JSONResponse({"error": "not_found", "detail": "frame not done"}, 404)
        return Response(png_bytes(8, 6, frame), media_type="image/png")

    @app.get("/jobs/{job_id}/frames.tar")
    async def frames_archive(job_id: str, frames: str) -> Response:
        job = node.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "not_found", "detail": "no such job"}, 404)
        try:
            wanted = parse_frame_spec(frames)
        except FrameSpecError as exc:
            return JSONResponse({"error": "bad_request", "detail": str(exc)}, 400)
        if len(wanted) > MAX_ARCHIVE_FRAMES or any(f not in job.frame_states for f in wanted):
            return JSONResponse({"error": "bad_request", "detail": "frames"}, 400)
        if any(job.frame_states[f] != FrameState.DONE for f in wanted):
            return JSONResponse({"error": "conflict", "detail": "frames not done"}, 409)
        node.archives += 1
        parts = []
        for f in wanted:
            if node.serves(f):
                image = png_bytes(8, 6, f)
                parts += [tar_header(frame_name(f, ".png"), len(image), 0), image]
                parts.append(padding(len(image)))
        return Response(b"".join([*parts, END]), media_type=ARCHIVE_MEDIA_TYPE)

    @app.get("/jobs/{job_id}/log")
    async def job_log(job_id: str) -> Response:
        return Response("fake node: no Blender here\n", media_type="text/plain")

    return app


def fake_farm_app(nodes: list[FakeNode]) -> Starlette:
    """One ASGI app serving many fake nodes: node i answers under /n/{i}."""
    return Starlette(
        routes=[Mount(f"/n/{i}", create_fake_node_app(n)) for i, n in enumerate(nodes)]
    )


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Run `app` on a real uvicorn server on a free loopback port; yield its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
