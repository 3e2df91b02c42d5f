"""The scheduler's process: `python -m orchestrator.runtime.process SOCKET LOG_LEVEL`.

Started by the orchestrator (runtime/links.py, ProcessLink), never by hand. It reads its
settings as one line of JSON from stdin, runs the scheduler and all node traffic, and answers
the API process on the Unix socket SOCKET. It stops when its stdin closes: when the API process
stops or dies. It leaves SIGINT and SIGTERM to the API process, which stops it in order. It
asks for no token: the socket's folder is the API process's private temporary folder (0700).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

from farm_common.errors import NotFound
from farm_common.logs import configure_logging
from farm_common.paths import JobId
from orchestrator.runtime.backend import Backend
from orchestrator.scheduling.registry import ALL_NODE_ACTIONS
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import Store

# When the machine is short of CPU, the API's answers (status, the dashboard) go first and the
# scheduler's polls and collection wait (benchmarks/scale, 100 nodes x 1-ms frames: status p99
# 55 -> 42 ms, same makespan). It yields to Blender on the same machine too; on real renders it
# needs little (about 2 CPU seconds per 1,000 frames).
NICE = 5


def engine_app(settings: OrchestratorSettings) -> FastAPI:
    """The child's answers to the API process; the store is shared through SQLite."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = Store(settings.db_path)
        try:
            core = await Backend.start(settings, store)
        except BaseException:
            store.close()
            raise
        app.state.core = core
        try:
            yield
        finally:
            try:
                await core.stop()
            finally:
                store.close()

    app = FastAPI(title="Render farm scheduler (internal)", lifespan=lifespan)

    def core_of(request: Request) -> Backend:
        core: Backend = request.app.state.core
        return core

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/jobs/{job_id}/enqueue")
    async def enqueue(request: Request, job_id: JobId) -> dict[str, bool]:
        if not await core_of(request).enqueue_stored(job_id):
            raise NotFound(f"no job {job_id} in the store")
        return {"ok": True}

    @app.post("/jobs/{job_id}/delete")
    async def delete(request: Request, job_id: JobId) -> dict[str, str | None]:
        return {"refused": await core_of(request).delete(job_id)}

    @app.post("/jobs/{job_id}/cancel")
    async def cancel(request: Request, job_id: JobId) -> dict[str, bool]:
        await core_of(request).cancel(job_id)
        return {"ok": True}

    @app.post("/nodes/register")
    async def register(request: Request) -> dict[str, Any]:
        core = core_of(request)
        refused = core.register(await request.json())  # checked by the API process
        if refused is None:
            core.scheduler.on_node_seen()
        return {"ok": refused is None, "refused": refused}

    @app.get("/nodes")
    async def nodes(request: Request) -> list[dict[str, Any]]:
        return core_of(request).nodes()

    @app.post("/nodes/{action}", include_in_schema=False)
    async def node_action(request: Request, action: str) -> dict[str, Any]:
        if action not in ALL_NODE_ACTIONS:
            raise NotFound(f"no node action {action!r}")
        url = str((await request.json())["url"])
        return {"node": await core_of(request).node_action(url, action)}

    @app.get("/facts")
    async def facts(request: Request) -> dict[str, Any]:
        f = core_of(request).facts()
        return {"total_slots": f.total_slots, "blender_versions": f.blender_versions,
                "tags": f.tags}  # fmt: skip

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        return Response(await core_of(request).metrics_text(), media_type="text/plain")

    return app


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # Ctrl-C reaches the whole process group, and systemd or `tini -g` send SIGTERM to every
        # process: the API process decides when this one stops (it closes the stdin).
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        yield


def _stop_on_eof(server: uvicorn.Server) -> None:
    sys.stdin.buffer.read()  # returns when the API process closes the pipe, or dies
    server.should_exit = True


def main(argv: list[str] | None = None) -> None:
    socket, log_level = argv if argv is not None else sys.argv[1:]
    settings = OrchestratorSettings(**json.loads(sys.stdin.buffer.readline()))
    os.nice(NICE)
    configure_logging(log_level, settings.log_format)
    config = uvicorn.Config(
        engine_app(settings),
        uds=socket,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=5,
        log_config=None,
    )
    server = _Server(config)
    threading.Thread(target=_stop_on_eof, args=(server,), daemon=True).start()
    try:
        server.run()
    finally:  # the API process removes it too, unless it was killed
        shutil.rmtree(Path(socket).parent, ignore_errors=True)


if __name__ == "__main__":
    main()
