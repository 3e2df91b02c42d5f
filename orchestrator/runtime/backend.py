"""The scheduler's side of the orchestrator, and what the HTTP API asks of it.

`Backend` holds the registry, the scheduler and its node client, and the metrics. The API reaches
it through a link (orchestrator/runtime/links.py): in the same process, on a thread of its own
(`ThreadLink`), or in a process of its own (`ProcessLink`, what the `orchestrator` command
runs), where the scheduler's work never holds the API's interpreter lock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm_common.tls import client_context
from orchestrator.metrics import Metrics
from orchestrator.nodes.client import NodeClient
from orchestrator.scheduling.registry import Registry, RegistryFull, node_view
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import QueuedBatch, Store
from orchestrator.store.queries import Job
from orchestrator.webhooks import Webhooks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Facts:
    """What the API shows of the nodes without asking the scheduler each time."""

    total_slots: int  # slots of the live nodes
    blender_versions: dict[str, str | None]  # node URL -> its Blender version
    tags: dict[str, list[str]] = field(default_factory=dict)  # node taking work -> its tags


class Backend:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        scheduler: Scheduler,
        client: NodeClient,
        metrics: Metrics,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.registry = registry
        self.scheduler = scheduler
        self.client = client
        self.metrics = metrics
        self.clock = clock
        self.webhooks: Webhooks | None = None

    @classmethod
    async def start(
        cls,
        settings: OrchestratorSettings,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> Backend:
        """Build it and start the scheduler, on the loop that will run them."""
        registry = Registry(
            settings.node_timeout_seconds,
            clock=monotonic,
            max_nodes=settings.max_nodes,
            forget_after=settings.forget_lost_node_seconds,
        )
        metrics = Metrics()
        client = NodeClient(
            settings.token,
            settings.request_timeout_seconds,
            settings.transfer_timeout_seconds,
            on_answer=registry.seen,
            min_rate=settings.min_transfer_kb_per_second * 1024,
            key_of=registry.key_of,
            ssl_context=client_context(settings.ca_cert) if settings.ca_cert else None,
        )
        webhooks = Webhooks(
            settings.webhook, settings.webhook_secret, verify=client_context(settings.ca_cert)
        )
        scheduler = Scheduler(
            settings, store, registry, client, metrics, clock=clock, events=webhooks.emit
        )
        try:
            await scheduler.start()
        except BaseException:
            await client.aclose()
            raise
        backend = cls(store, registry, scheduler, client, metrics, clock)
        backend.webhooks = webhooks
        return backend

    async def stop(self) -> None:
        try:
            await self.scheduler.stop()
        finally:
            await self.client.aclose()
            if self.webhooks is not None:
                await self.webhooks.aclose()

    # -- on the scheduler's loop ----------------------------------------------------------------
    async def enqueue(self, job: Job, batches: list[QueuedBatch]) -> None:
        await self.scheduler.enqueue(job, batches)

    async def enqueue_stored(self, job_id: str) -> bool:
        """Queue a job the API wrote to the store; False if there is no such job."""
        job = await self.store.run(self.store.get_job, job_id)
        if job is None:
            return False
        batches = await self.store.run(self.store.queued_batches, job_id)
        await self.scheduler.enqueue(job, batches)
        return True

    async def cancel(self, job_id: str) -> None:
        await self.scheduler.cancel(job_id)

    async def delete(self, job_id: str) -> str | None:
        return await self.scheduler.delete(job_id)

    async def node_action(self, url: str, action: str) -> dict[str, Any] | None:
        """Drain, pause or resume a node; its view after, or None: no such node."""
        if not await self.scheduler.set_node_state(url, action):
            return None
        node = self.registry.get(url)
        return None if node is None else node_view(node, self.registry, self.clock())

    async def metrics_text(self) -> bytes:
        m = self.metrics
        states = {"healthy": 0, "busy": 0, "lost": 0, "draining": 0, "paused": 0}
        for node in self.registry.nodes():
            states[self.registry.state(node)] += 1
        for state, count in states.items():
            m.nodes.labels(state=state).set(count)
        m.queue_batches.set(self.scheduler.queued_batches())
        jobs = await self.store.run(self.store.count_jobs_by_state)
        for state in ("queued", "running", "completed", "failed", "cancelled"):
            m.jobs.labels(state=state).set(jobs.get(state, 0))
        return m.render()

    # -- from any thread: the registry is read whole (see Registry) -----------------------------
    def register(self, info: dict[str, Any]) -> str | None:
        """A node's heartbeat (POST /nodes/register); returns why it was refused, if it was.
        The caller wakes the scheduler (`scheduler.on_node_seen`) on the scheduler's loop."""
        url = str(info["url"]).rstrip("/")
        known = self.registry.get(url) is not None
        try:
            node = self.registry.update(url, info)
        except RegistryFull as exc:
            log.warning("node %s not registered: %s", url, exc)
            return str(exc)
        if not known:
            log.info("node %s registered (%d slots, Blender %s)", node.url, node.slots,
                     node.blender_version)  # fmt: skip
        return None

    def nodes(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [node_view(n, self.registry, now) for n in self.registry.nodes()]

    def facts(self) -> Facts:
        nodes = self.registry.nodes()
        return Facts(
            total_slots=self.registry.total_slots(),
            blender_versions={n.url: n.blender_version for n in nodes},
            tags={n.url: sorted(n.tags) for n in self.registry.working()},
        )
