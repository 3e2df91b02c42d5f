"""The render node's app: `create_app(settings)`; the lifespan owns the job manager (and with it
every Blender process) and the heartbeat to the orchestrator."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from farm_common import health
from farm_common.auth import BearerTokenMiddleware
from farm_common.blob_api import files_router
from farm_common.errors import document_errors, install_error_handlers
from farm_common.limits import BodyLimitMiddleware, json_limit
from farm_common.protocol import NodeRegistration
from farm_common.schedule import parse_schedule, within_schedule
from farm_common.tls import client_context
from render_node import __version__
from render_node.api import jobs, scenes, system
from render_node.api.deps import Node, cpu_count, file_store
from render_node.credentials import Credentials
from render_node.devices import describe, plan_slots
from render_node.devices import kind as device_kind
from render_node.engine import discover_devices, parse_engine
from render_node.files import FileStore
from render_node.jobs import BlenderOptions, JobManager
from render_node.metrics import NodeMetrics
from render_node.registration import default_advertise_url, heartbeat_loop, say_leaving
from render_node.runner import blender_env
from render_node.sandbox import choose_sandbox
from render_node.scenes import SceneStore
from render_node.settings import NodeSettings

log = logging.getLogger(__name__)


def off_hours(active: str | None, now: time.struct_time) -> bool:
    """Whether a node with `active` hours (--active-hours) is outside them at local `now`."""
    if active is None:
        return False
    minute = now.tm_hour * 60 + now.tm_min
    return not within_schedule(parse_schedule(active), now.tm_wday, minute)


def create_app(settings: NodeSettings, *, environ: dict[str, str] | None = None) -> FastAPI:
    """`environ` is the environment Blender runs with (default: the node's own)."""
    data_dir = settings.resolved_data_dir.resolve()
    sandbox = choose_sandbox(
        settings.sandbox, user=settings.sandbox_user, hide=[data_dir, *settings.sandbox_hide]
    )
    environ = dict(os.environ) if environ is None else environ
    engine = parse_engine(settings.blender)
    found = []
    if settings.device != "cpu":
        found = discover_devices(
            engine, blender_env(environ, settings.blender_env), timeout=settings.version_timeout
        )
    devices = plan_slots(settings.device, settings.gpu_numbers, found, settings.slots)
    manager = JobManager(
        data_dir=data_dir,
        blender=settings.blender,
        slots=len(devices),
        devices=devices,
        environ=environ,
        options=BlenderOptions(
            threads=settings.threads,
            frame_timeout=settings.frame_timeout,
            allow_freestyle=settings.allow_freestyle,
            memory_limit_mb=settings.memory_limit_mb,
            sandbox=sandbox,
            env_names=tuple(settings.blender_env),
            log_lines=settings.log_lines,
            version_timeout=settings.version_timeout,
            path_map=tuple(settings.path_pairs),
            warm_seconds=settings.warm_seconds,
        ),
        on_finished=lambda job: metrics.record(job.batch),
    )
    metrics = NodeMetrics(manager.slot_count, lambda: manager.busy)
    store = SceneStore(
        data_dir / "scenes", settings.scenes_dir.resolve(), settings.max_upload_bytes
    )
    files = FileStore(
        data_dir / "files",
        settings.max_upload_bytes,
        int(settings.file_store_mb * 1024 * 1024),
        needed=manager.needed_files,
    )
    scheme = "https" if settings.tls_cert else "http"
    verify = client_context(settings.ca_cert)
    node = Node(
        settings,
        manager,
        store,
        metrics,
        files=files,
        url=settings.advertise_url
        or default_advertise_url(settings.host, settings.port, settings.orchestrator, scheme),
    )

    credentials = Credentials(
        token=settings.token,
        join_token=settings.join_token,
        join_token_file=settings.join_token_file,
        keep_in=data_dir,
    )

    async def registration() -> dict[str, Any]:
        # Without --advertise-url the address is worked out again on every heartbeat: in a
        # Swarm the orchestrator's name may not resolve yet when the node starts, and a
        # restarted container can come back with another IP.
        if not settings.advertise_url:
            node.url = await asyncio.to_thread(
                default_advertise_url, settings.host, settings.port, settings.orchestrator, scheme
            )
        return NodeRegistration(
            url=node.url,
            slots=manager.slot_count,
            busy=manager.busy,
            version=__version__,
            blender_version=await manager.blender_version(),
            cpu_count=cpu_count(),
            name=node.name,
            instance=node.instance,
            sandbox=sandbox.describe(),
            engine=manager.engine.name,
            devices=[describe(d) for d in manager.devices],
            device=device_kind(manager.devices),
            warm=manager.warm_sessions(),
            tags=settings.tag_list,
            active_hours=settings.active_hours,
            off_hours=off_hours(settings.active_hours, time.localtime()),
        ).model_dump()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await manager.start()
        await asyncio.to_thread(store.remove_partial_uploads)
        await asyncio.to_thread(files.root.mkdir, parents=True, exist_ok=True)
        await asyncio.to_thread(files.remove_partial_uploads)
        background = [asyncio.create_task(manager.blender_version(), name="blender-version")]
        if settings.orchestrator:
            background.append(
                asyncio.create_task(
                    heartbeat_loop(
                        settings.orchestrator,
                        registration,
                        credentials=credentials,
                        interval=settings.heartbeat_seconds,
                        verify=verify,
                    ),
                    name="heartbeat",
                )
            )
        log.info(
            "render node up: %s, data in %s, Blender sandbox: %s, engine %s (%s), slots: %s",
            node.url, data_dir, sandbox.describe(), engine.name, engine.path,
            "; ".join(describe(d) for d in devices),
        )  # fmt: skip
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if settings.orchestrator:  # its batches go elsewhere now, not after the timeout
                await say_leaving(
                    settings.orchestrator, node.url, token=credentials.bearer(), verify=verify
                )
            await manager.shutdown()
            log.info("render node stopped: no Blender left running")

    app = FastAPI(title="Blender farm render node", version=__version__, lifespan=lifespan)

    def body_limit(method: str, path: str) -> tuple[int, str] | None:
        if method == "PUT" and path.startswith(("/scenes/", "/files/")):
            return store.max_bytes, (
                f"upload is larger than this node's limit of "
                f"{store.max_bytes // (1024 * 1024)} MB (--max-upload-mb)"
            )
        return json_limit(method, path)

    install_error_handlers(app)
    document_errors(app)
    app.include_router(health.router)
    app.include_router(system.router)
    app.include_router(jobs.router)
    app.include_router(scenes.router)
    app.include_router(files_router(file_store))
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    # Outermost: first. An open farm's node is open; else it takes its work key and FARM_TOKEN.
    app.add_middleware(
        BearerTokenMiddleware, token=credentials.accepted if credentials.checked else None
    )
    app.state.node = node
    # Tests reach the node's parts by these names.
    app.state.manager = manager
    app.state.store = store
    app.state.settings = settings
    app.state.credentials = credentials
    return app
