"""A fake render node: the node HTTP API in-process, rendering nothing, with controllable faults.

It speaks the render-node contract of DESIGN.md (POST/GET/DELETE /jobs, frames, frames.tar,
scenes, /info, /health) and serves small generated PNGs, so the orchestrator can be tested
without Blender or node processes, and a 100-node farm fits in one process for scale benchmarks:

    nodes = [FakeNode(f"n{i}", slots=2, seconds_per_frame=0.01) for i in range(100)]
    with serve_in_thread(fake_farm_app(nodes)) as base:   # node i is at f"{base}/n/{i}"
        ...

Knobs per node: `slots`, `startup` (seconds per batch), `seconds_per_frame`, `fail_frames`
(frames reported failed with an `Error:` text), `refuse` (every batch fails with this reason
as the job's `refused`, like a node refusing a Freestyle scene), `frozen` (every request
hangs, like SIGSTOP), `blender_version`, `token` (bearer token required when set), `archive`
(False: no frames.tar, like a node from before it), `holds` (False: no status versions, so no
held polls, like a node from before them), `scene_check_seconds` (HEAD /scenes answers that
late), `withhold` (frame -> how many more times a done frame is not served: 404 alone, left
out of archives). `rendered` lists every frame the node
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
from farm_common.protocol import MAX_ARCHIVE_FRAMES, frame_name
from render_node.archive import END, padding, tar_header
from tests.fake_blender import png_bytes


@dataclass
class FakeJob:
    id: str
    scene: str
    frames: list[int]
    state: str = "queued"
    frame_states: dict[int, str] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None
    refused: str | None = None

    def version(self) -> str:
        """As a real node's: changes when the job's state changes or one of its frames ends."""
        ended = [s for s in self.frame_states.values() if s in ("done", "failed")]
        return f"{self.state}/{ended.count('done')}/{ended.count('failed')}"


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
    archive: bool = True
    withhold: dict[int, int] = field(default_factory=dict)
    # False: like a node from before held polls (no status version, every answer at once).
    holds: bool = True
    scene_check_seconds: float = 0.0  # HEAD /scenes answers after this long (a slow disk)
    polls: list[tuple[str, str | None]] = field(default_factory=list)  # (job, since) each poll
    requests: list[tuple[float, str]] = field(default_factory=list)  # (unix time, "GET /info")
    rendered: list[int] = field(default_factory=list)
    archives: int = 0
    scenes: set[str] = field(default_factory=set)
    scene_puts: int = 0
    scene_heads: int = 0
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
        return sum(1 for j in self.jobs.values() if j.state in ("queued", "running"))

    async def _render(self, job: FakeJob) -> None:
        # Like a real node: a job waits, queued, until one of the node's slots is free.
        if self._slot_lock is None:
            self._slot_lock = asyncio.Semaphore(self.slots)
        async with self._slot_lock:
            job.state = "running"
            await asyncio.sleep(self.startup)
            if self.refuse:
                for frame in job.frames:
                    job.frame_states[frame] = "failed"
                    job.errors[frame] = self.refuse
                job.refused, job.state = self.refuse, "failed"
                return
            for frame in job.frames:
                job.frame_states[frame] = "rendering"
                await asyncio.sleep(self.seconds_per_frame)
                if frame in self.fail_frames:
                    job.frame_states[frame] = "failed"
                    job.errors[frame] = (
                        f"Error: CUDA error: Out of memory (frame {frame}, {self.name})"
                    )
                else:
                    job.frame_states[frame] = "done"
                    self.rendered.append(frame)
            job.state = "failed" if job.errors else "completed"


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

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        return {
            "version": "fake",
            "blender_version": node.blender_version,
            "slots": node.slots,
            "busy": node.busy,
            "cpu_count": 2,
            "name": node.name,
        }

    @app.head("/scenes/{sha}")
    async def head_scene(sha: str) -> Response:
        await asyncio.sleep(node.scene_check_seconds)
        node.scene_heads += 1
        return Response(status_code=200 if sha in node.scenes else 404)

    @app.put("/scenes/{sha}", status_code=201)
    async def put_scene(sha: str, request: Request) -> dict[str, str]:
        digest = hashlib.sha256()
        async for chunk in request.stream():
            digest.update(chunk)
        if digest.hexdigest() != sha:
            return JSONResponse({"error": "bad_request", "detail": "hash mismatch"}, 400)  # type: ignore[return-value]
        node.scenes.add(sha)
        node.scene_puts += 1
        return {"scene": f"sha256:{sha}"}

    @app.post("/jobs", status_code=202)
    async def submit(body: dict[str, Any]) -> Any:
        scene = str(body.get("scene", ""))
        if scene.startswith("sha256:") and scene[7:] not in node.scenes:
            return JSONResponse({"error": "not_found", "detail": f"unknown scene {scene}"}, 404)
        job = FakeJob(uuid.uuid4().hex[:12], scene, parse_frame_spec(str(body["frames"])))
        job.frame_states = dict.fromkeys(job.frames, "pending")
        node.jobs[job.id] = job
        node.batches += 1
        job.task = asyncio.create_task(node._render(job))
        if not node.holds:
            return {"id": job.id}
        return {"id": job.id, "state": job.state, "version": job.version()}

    @app.get("/jobs/{job_id}")
    async def status(job_id: str, wait: float = 0.0, since: str | None = None) -> Any:
        job = node.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "not_found", "detail": "no such job"}, 404)
        node.polls.append((job_id, since))
        # Held like a real node's answer: until the job changes, or `wait` seconds.
        deadline = time.monotonic() + min(wait, 10.0)
        while node.holds and since is not None and job.version() == since:
            if time.monotonic() >= deadline:
                break
            if job.state in ("completed", "failed", "cancelled"):
                break
            await asyncio.sleep(0.02)
        frames = []
        for f in job.frames:
            item: dict[str, Any] = {"frame": f, "state": job.frame_states[f]}
            if f in job.errors:
                item["error"] = job.errors[f]
            if item["state"] == "done":
                item["seconds"] = node.seconds_per_frame
            frames.append(item)
        done = sum(1 for f in frames if f["state"] in ("done", "failed"))
        out = {
            "id": job.id,
            "state": job.state,
            "frames": frames,
            "progress": done / len(frames),
        }
        if node.holds:
            out["version"] = job.version()
        if job.errors:
            out["error"] = next(iter(job.errors.values()))
        if job.refused:
            out["refused"] = job.refused
        return out

    @app.delete("/jobs/{job_id}")
    async def delete(job_id: str) -> Any:
        job = node.jobs.get(job_id)
        if job is None:
            return JSONResponse({"error": "not_found", "detail": "no such job"}, 404)
        if job.task and not job.task.done():
            job.task.cancel()
            job.state = "cancelled"
            return {"id": job_id, "state": "cancelled"}
        del node.jobs[job_id]
        return {"id": job_id, "state": "deleted"}

    @app.get("/jobs/{job_id}/frames/{frame}")
    async def frame(job_id: str, frame: int) -> Response:
        job = node.jobs.get(job_id)
        if job is None or job.frame_states.get(frame) != "done" or not node.serves(frame):
            return JSONResponse({"error": "not_found", "detail": "frame not done"}, 404)
        return Response(png_bytes(8, 6, frame), media_type="image/png")

    if node.archive:

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
            if any(job.frame_states[f] != "done" for f in wanted):
                return JSONResponse({"error": "conflict", "detail": "frames not done"}, 409)
            node.archives += 1
            parts = []
            for f in wanted:
                if node.serves(f):
                    image = png_bytes(8, 6, f)
                    parts += [tar_header(frame_name(f, ".png"), len(image), 0), image]
                    parts.append(padding(len(image)))
            return Response(b"".join([*parts, END]), media_type="application/x-tar")

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
