"""A stand-in orchestrator serving the dashboard's JSON contract from canned, mutable data.

It mounts the real dashboard router and answers `/render`, `/render/{id}`, `/framemap`,
`/frames`, frame images, `video.mp4` and `/nodes` the way the orchestrator's HTTP contract says,
behind the same bearer-token check, so the browser test exercises the real pages end to end
until it can run against the real orchestrator with fake render nodes.
"""

from __future__ import annotations

import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from socket import socket
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse

from farm_common.auth import check_bearer
from farm_common.errors import FarmError, NotFound, error_body, install_error_handlers
from orchestrator.dashboard.pages import dashboard_router, framemap, is_public_path

NODES = {
    "http://10.0.0.11:8100": "render-01",
    "http://10.0.0.12:8100": "render-02",
    "http://10.0.0.13:8100": "render-03",
}
CUDA_ERROR = (
    "Error: CUDA error: out of memory in cuMemAlloc(&device_pointer, size), "
    "line 568 <cuda_device.cpp>"
)


def frame_png(frame: int, width: int = 320, height: int = 180) -> bytes:
    """A small 'render': a dusk gradient with a sun that moves with the frame number."""
    sun_x = 40 + (frame * 7) % (width - 80)
    sun_y = 70 + (frame * 3) % 40
    rows = []
    for y in range(height):
        t = y / height
        sky = (int(40 + 200 * t), int(60 + 80 * t), int(140 - 60 * t))
        row = bytearray(b"\x00")
        for x in range(width):
            dx, dy = x - sun_x, y - sun_y
            if dx * dx + dy * dy < 400:
                row += b"\xff\xd2\x6e"
            elif y > height * 0.78:
                row += bytes((30, 40 + (x * 13 + frame) % 20, 35))
            else:
                row += bytes(sky)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"".join(rows)))
        + chunk(b"IEND", b"")
    )


@dataclass
class Job:
    id: str
    scene: str
    frames: list[int]
    states: list[str]
    state: str
    created: float
    started: float | None = None
    finished: float | None = None
    priority: int = 0
    batches: list[dict[str, Any]] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    video: Path | None = None
    blender_versions: list[str] = field(default_factory=lambda: ["4.2.3"])
    assets: dict[str, Any] | None = None  # a packed shot's files, bytes, warnings
    samples: dict[str, Any] | None = None  # a job split by samples: its parts (GET /render/ID)
    requeues: list[dict[str, Any]] = field(default_factory=list)  # POST .../requeue bodies
    waiting: str | None = None  # why no node takes it (GET /render/ID)
    source: str | None = None  # a video job's render job (its kind is then "video")
    fps: int | None = None

    def counts(self) -> dict[str, int]:
        return {
            "total": len(self.frames),
            "done": self.states.count("done"),
            "failed": self.states.count("failed"),
            "rendering": self.states.count("rendering"),
        }

    def summary(self, now: float) -> dict[str, Any]:
        counts = self.counts()
        progress = counts["done"] / counts["total"] if counts["total"] else 0.0
        out: dict[str, Any] = {
            "id": self.id,
            "scene": self.scene,
            "state": self.state,
            "frames": counts,
            "progress": progress,
            "created": self.created,
            "priority": self.priority,
        }
        if self.started is not None:
            out["started"] = self.started
            end = self.finished if self.finished is not None else now
            out["elapsed_seconds"] = end - self.started
            if self.state == "running" and 0 < progress < 1:
                out["eta_seconds"] = out["elapsed_seconds"] * (1 - progress) / progress
        if self.finished is not None:
            out["finished"] = self.finished
        return out

    def detail(self, now: float) -> dict[str, Any]:
        out = self.summary(now)
        out["batches"] = self.batches
        out["nodes"] = {
            url: {"name": name, "state": "lost" if name == "render-03" else "busy"}
            for url, name in NODES.items()
        }
        out["failed_frames"] = [
            {"frame": f, "error": self.errors.get(f, ""), "nodes": list(NODES)[:2]}
            for f, s in zip(self.frames, self.states, strict=True)
            if s == "failed"
        ]
        out["video"] = self.video is not None
        out["blender_versions"] = self.blender_versions
        out["mixed_blender_versions"] = len(self.blender_versions) > 1
        if self.assets is not None:
            out["assets"] = self.assets
        if self.samples is not None:
            out["samples"] = self.samples
        out["waiting"] = self.waiting
        out["kind"] = "render" if self.source is None else "video"
        out["source"], out["fps"] = self.source, self.fps
        out["frames_spec"] = f"{self.frames[0]}-{self.frames[-1]}" if self.frames else ""
        out["requeues"] = [
            {"at": r["at"], "asked": r.get("frames", "failed"), "frames": r.get("frames", "1-9"),
             "count": 2}
            for r in self.requeues
        ]  # fmt: skip
        return out


def _batches(
    frames: list[int], size: int, t0: float, seconds_per_batch: float, done_batches: int
) -> list[dict[str, Any]]:
    """Batches round-robin over the first two nodes; `done_batches` finished, two running."""
    urls = list(NODES)[:2]
    batches = []
    lane_free = {url: t0 for url in urls}
    for i in range(0, len(frames), size):
        chunk = frames[i : i + size]
        n = i // size
        spec = f"{chunk[0]}-{chunk[-1]}" if len(chunk) > 1 else str(chunk[0])
        batch: dict[str, Any] = {"id": f"b{n}", "frames": spec, "attempts": 1}
        if n < done_batches + 2:
            url = urls[n % 2]
            started = lane_free[url]
            batch.update(node=url, started=started)
            if n < done_batches:
                finished = started + seconds_per_batch * (0.8 + 0.4 * ((n * 7) % 5) / 5)
                batch.update(state="done", finished=finished)
                lane_free[url] = finished + 0.5
            else:
                batch["state"] = "running"
        else:
            batch.update(node=None, state="queued", attempts=0)
        batches.append(batch)
    return batches


class FakeFarm:
    """The canned farm: a running job with failures, a finished one with a video, a queued one."""

    def __init__(self, video: Path | None = None, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.lock = threading.Lock()
        self.jobs: dict[str, Job] = {}
        # Tokens besides the farm's, each (name, role): what GET /whoami says of them.
        self.tokens: dict[str, tuple[str, str]] = {}
        self.png_cache: dict[int, bytes] = {}

        frames = list(range(1, 241))
        t0 = now - 120
        job = Job(
            id="j-shot010",
            scene="shot_010_lighting.blend",
            frames=frames,
            states=["pending"] * len(frames),
            state="running",
            created=t0 - 20,
            started=t0,
            priority=5,
        )
        job.batches = _batches(frames, 8, t0, 18.0, done_batches=12)
        # Running batches: the first half of their frames collected, the next one rendering.
        for batch in job.batches:
            first, _, last = batch["frames"].partition("-")
            batch_frames = range(int(first), int(last or first) + 1)
            for k, f in enumerate(batch_frames):
                if batch["state"] == "done":
                    job.states[f - 1] = "done"
                elif batch["state"] == "running":
                    job.states[f - 1] = "done" if k < 4 else ("rendering" if k == 4 else "pending")
        for f, error in {
            37: CUDA_ERROR,
            38: CUDA_ERROR,
            61: "Error: Cannot read file '/textures/<missing> tree_bark.exr': No such file",
        }.items():
            job.states[f - 1] = "failed"
            job.errors[f] = error
        job.batches[4]["attempts"] = 3
        # render-03 took a batch, failed it and was lost; its frames went to the others.
        lost_url = list(NODES)[2]
        job.batches.append(
            {
                "id": "b-lost",
                "frames": "33-40",
                "node": lost_url,
                "state": "failed",
                "attempts": 1,
                "started": t0 + 2,
                "finished": t0 + 64,
            }
        )
        job.batches[7]["attempts"] = 3
        self.jobs[job.id] = job

        done = Job(
            id="j-turntable",
            scene="turntable_v3.blend",
            frames=list(range(1, 49)),
            states=["done"] * 48,
            state="completed",
            created=now - 4000,
            started=now - 3950,
            finished=now - 3700,
            video=video,
        )
        done.batches = _batches(done.frames, 8, now - 3950, 40.0, done_batches=6)
        self.jobs[done.id] = done

        queued = Job(
            id="j-forest",
            scene="forest_wide.blend",
            frames=list(range(1, 1001, 2)),
            states=["pending"] * 500,
            state="queued",
            created=now - 60,
            priority=1,
        )
        self.jobs[queued.id] = queued

        self.node_actions: list[tuple[str, str]] = []  # POST /nodes/ACTION, in order
        self.deleted: list[str] = []  # POST /render/ID/delete, in order
        self.nodes = [
            {
                "url": url,
                "name": name,
                "state": state,
                "slots": 2,
                "busy": busy,
                "current_batch": batch,
                "frames_rendered": rendered,
                "last_seen": now - seen,
                "blender_version": "4.2.3",
                "sandbox": sandbox,
                "engine": engine,
                "devices": devices,
                "tags": ["gpu", "highmem"] if name == "render-01" else [],
            }
            for (url, name), (state, busy, batch, rendered, seen), sandbox, (
                engine,
                devices,
            ) in zip(
                NODES.items(),
                [
                    ("busy", 1, {"job": "j-shot010", "frames": "97-104"}, 412, 1),
                    ("busy", 1, {"job": "j-shot010", "frames": "105-112"}, 398, 1),
                    ("lost", 0, None, 57, 95),
                ],
                ["bwrap", "none", "user farm-blender"],
                [
                    ("bpy", ["OPTIX: RTX 4090", "OPTIX: RTX 4090"]),
                    ("blender", ["CPU", "CPU"]),
                    ("blender", []),
                ],
                strict=True,
            )
        ]

    def add_job(self, job: Job) -> None:
        with self.lock:
            self.jobs[job.id] = job

    def finish_frames(self, job_id: str, count: int) -> None:
        """Progress: the next `count` pending or rendering frames get collected."""
        with self.lock:
            job = self.jobs[job_id]
            for i, state in enumerate(job.states):
                if count == 0:
                    break
                if state in ("pending", "rendering"):
                    job.states[i] = "done"
                    count -= 1

    def job(self, job_id: str) -> Job:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        return job

    def png(self, frame: int) -> bytes:
        if frame not in self.png_cache:
            self.png_cache[frame] = frame_png(frame)
        return self.png_cache[frame]


def create_app(farm: FakeFarm, token: str | None = None, *, with_framemap: bool = True) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    # What the orchestrator's auth must do too: the dashboard shells carry no data, so they
    # pass; everything else needs the bearer token.
    @app.middleware("http")
    async def auth(request: Request, call_next: Any) -> Response:
        if not is_public_path(request.url.path):
            try:
                check_bearer(request, [t for t in (token, *farm.tokens) if t])
            except FarmError as exc:
                from fastapi.responses import JSONResponse

                return JSONResponse(
                    error_body(exc.code, exc.detail), exc.status_code, headers=exc.headers
                )
        response: Response = await call_next(request)
        return response

    app.include_router(dashboard_router(token))

    @app.get("/whoami")
    def whoami(request: Request) -> dict[str, Any]:
        given = request.headers.get("authorization", "").partition(" ")[2]
        name, role = farm.tokens.get(given, ("admin", "admin"))
        return {"name": name, "role": role}

    @app.get("/render")
    def list_jobs() -> dict[str, Any]:
        now = time.time()
        with farm.lock:
            return {"jobs": [job.summary(now) for job in farm.jobs.values()]}

    @app.get("/render/{job_id}")
    def job_detail(job_id: str) -> dict[str, Any]:
        with farm.lock:
            return farm.job(job_id).detail(time.time())

    @app.delete("/render/{job_id}")
    def cancel(job_id: str) -> dict[str, Any]:
        with farm.lock:
            job = farm.job(job_id)
            job.state = "cancelled"
            job.finished = time.time()
            return {"id": job_id, "state": job.state}

    @app.post("/render/{job_id}/delete")
    def delete(job_id: str) -> dict[str, Any]:
        with farm.lock:
            job = farm.job(job_id)
            if job.state in ("queued", "running"):
                raise HTTPException(409, f"job {job_id} is {job.state}: cancel it first")
            del farm.jobs[job_id]
            farm.deleted.append(job_id)
            return {"id": job_id, "deleted": True, "files": 3, "bytes": 1000}

    @app.post("/render/{job_id}/requeue", status_code=202)
    def requeue(job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        with farm.lock:
            job = farm.job(job_id)
            job.state = "queued"
            job.requeues.append({**body, "at": time.time()})
            return {"id": job_id, "state": job.state, "requeued": body.get("frames", "1-9")}

    if with_framemap:

        @app.get("/render/{job_id}/framemap")
        def job_framemap(job_id: str) -> dict[str, Any]:
            with farm.lock:
                job = farm.job(job_id)
                return framemap(job.frames, job.states)

    @app.get("/render/{job_id}/frames")
    def job_frames(job_id: str, state: str | None = None) -> dict[str, Any]:
        with farm.lock:
            job = farm.job(job_id)
            return {
                "frames": [
                    {"frame": f, "state": s}
                    for f, s in zip(job.frames, job.states, strict=True)
                    if state is None or s == state
                ]
            }

    @app.get("/render/{job_id}/frames/{frame}")
    def frame_image(job_id: str, frame: int) -> Response:
        with farm.lock:
            job = farm.job(job_id)
            if frame not in job.frames or job.states[job.frames.index(frame)] != "done":
                raise NotFound(f"frame {frame} of job {job_id} is not rendered")
        return Response(farm.png(frame), media_type="image/png")

    @app.get("/render/{job_id}/video.mp4")
    def video(job_id: str) -> FileResponse:
        job = farm.job(job_id)
        if job.video is None:
            raise NotFound(f"job {job_id} has no video")
        return FileResponse(job.video, media_type="video/mp4")

    # A bare list, as the real orchestrator answers (/render answers {"jobs": [...]} here).
    @app.get("/nodes")
    def nodes() -> list[dict[str, Any]]:
        return farm.nodes

    @app.post("/nodes/{action}")
    def node_action(action: str, body: dict[str, Any]) -> dict[str, Any]:
        states = {"drain": "draining", "pause": "paused", "resume": "healthy"}
        with farm.lock:
            (node,) = [n for n in farm.nodes if n["url"] == body["url"]]
            node["state"] = states[action]
            farm.node_actions.append((action, body["url"]))
            return node

    return app


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` with uvicorn on a free loopback port in a thread; yield its base URL."""
    sock = socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the stand-in server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
