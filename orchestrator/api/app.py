"""The orchestrator's app: `create_app(settings)`, whose lifespan owns all the state, and the
middleware and error handling every router shares."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from farm_common import health
from farm_common.blob_api import files_router
from farm_common.blobs import BlobStore
from farm_common.errors import document_errors, error_body, install_error_handlers
from farm_common.limits import BodyLimitMiddleware, RateLimiter, json_limit
from orchestrator.api import job_actions, nodes, scenes, system, tokens
from orchestrator.api.authorization import AccessMiddleware, Doorkeeper, load_join_token
from orchestrator.api.deps import Farm, file_store
from orchestrator.api.render_jobs import render_router
from orchestrator.dashboard.pages import dashboard_router, is_public_path
from orchestrator.runtime.backend import Backend
from orchestrator.runtime.links import Link, ProcessLink, ThreadLink
from orchestrator.runtime.loop_thread import BackendUnavailable
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import Store

log = logging.getLogger(__name__)

MULTIPART_SLACK = 65536  # a scene upload's multipart framing, on top of --max-upload-mb


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
    upload_limit = (settings.max_upload_mb << 20) + MULTIPART_SLACK
    rate_limiter = (
        RateLimiter(settings.rate_limit, clock=monotonic) if settings.rate_limit else None
    )
    doorkeeper = Doorkeeper(settings.token, settings.join_token)

    def body_limit(method: str, path: str) -> tuple[int, str] | None:
        if method == "POST" and path == "/scenes":
            return upload_limit, (
                f"upload is larger than {settings.max_upload_mb} MB, the largest scene this farm "
                "takes (--max-upload-mb / FARM_MAX_UPLOAD_MB): pack less, or raise the limit"
            )
        if method == "PUT" and path.startswith("/files/"):
            return settings.max_upload_mb << 20, (
                f"file is larger than {settings.max_upload_mb} MB, the largest this farm takes "
                "(--max-upload-mb / FARM_MAX_UPLOAD_MB)"
            )
        return json_limit(method, path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        settings.renders_dir.mkdir(parents=True, exist_ok=True)
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_path)  # first: a data folder is migrated before the child runs
        doorkeeper.join_token = load_join_token(settings.join_token, settings.join_token_file)
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
                    lambda: Backend.start(settings, store, clock=clock, monotonic=monotonic)
                )
        except BaseException:
            store.close()
            raise
        files = BlobStore(settings.files_dir, settings.max_upload_mb << 20)
        files.root.mkdir(parents=True, exist_ok=True)
        files.remove_partial_uploads()
        app.state.farm = Farm(settings, store, link, clock, files)
        log.info("orchestrator up; data in %s", settings.data_dir)
        try:
            yield
        finally:
            await link.aclose()
            store.close()
            log.info("orchestrator stopped")

    app = FastAPI(title="Render farm orchestrator", lifespan=lifespan)
    install_error_handlers(
        app,
        upload_hint="send the scene as multipart/form-data with a 'file' field to POST /scenes "
        "(curl -F file=@scene.blend)",
    )

    @app.exception_handler(BackendUnavailable)
    async def _engine_down(request: Request, exc: BackendUnavailable) -> Response:
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
    app.include_router(health.router)
    app.include_router(system.router)
    app.include_router(scenes.router)
    app.include_router(files_router(file_store))
    app.include_router(render_router(rate_limiter))
    app.include_router(job_actions.router)
    app.include_router(nodes.router)
    app.include_router(tokens.router)
    app.include_router(dashboard_router(settings.token))
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    # Outermost: nothing (not /docs, not a 404, not a body) is read before the token is checked.
    app.add_middleware(AccessMiddleware, doorkeeper=doorkeeper, is_open=is_open_path, clock=clock)
    return app


def is_open_path(path: str) -> bool:
    """/health, and the dashboard's shells and static files (they hold no data)."""
    return path == "/health" or is_public_path(path)
