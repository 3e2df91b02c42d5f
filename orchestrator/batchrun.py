"""Running one batch on one node: push the scene, submit, follow, collect each frame at once.

The attempt races a watcher: when the registry declares the node lost, whatever request the
attempt is stuck in (a download from a frozen machine...) is abandoned at once. What happened is
returned as an `Outcome`; deciding what goes back to the queue is the scheduler's business.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator.collect import output_path, output_suffix, part_path
from orchestrator.metrics import Metrics
from orchestrator.nodeclient import (
    FrameMissing,
    NodeClient,
    NodeError,
    NodeJobGone,
    NodeRejected,
)
from orchestrator.policy import failure_counts, frame_started, poll_backoff
from orchestrator.registry import Registry
from orchestrator.settings import OrchestratorSettings
from orchestrator.store import Job, QueuedBatch, Store
from render_node.frames import compact_frames

log = logging.getLogger(__name__)

NODE_FINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass
class Outcome:
    state: str  # done | failed | lost | cancelled
    answered: bool  # False: the node stopped answering (the worker waits for it)
    errors: dict[int, str] = field(default_factory=dict)  # frames that failed on this node
    collected: set[int] = field(default_factory=set)
    node_job: str | None = None


class BatchRunner:
    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        registry: Registry,
        client: NodeClient,
        metrics: Metrics,
        is_cancelled: Callable[[str], bool],
        on_status: Callable[[str, QueuedBatch, dict[str, Any]], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.client = client
        self.metrics = metrics
        self.is_cancelled = is_cancelled
        self.on_status = on_status
        self._scene_locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def run(self, url: str, job: Job, batch: QueuedBatch) -> Outcome:
        errors: dict[int, str] = {}
        collected: set[int] = set()
        handle: dict[str, str] = {}
        attempt = asyncio.create_task(self._attempt(url, job, batch, errors, collected, handle))
        watcher = asyncio.create_task(self._until_lost(url))
        try:
            await asyncio.wait({attempt, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not attempt.done():
                attempt.cancel()
            await asyncio.gather(attempt, watcher, return_exceptions=True)
        if attempt.cancelled():
            log.warning("job %s batch %s: node %s lost mid-batch", job.id, batch.id, url)
            state, answered = "lost", False
        else:
            state, answered = attempt.result()
        return Outcome(state, answered, errors, collected, handle.get("node_job"))

    async def _ensure_scene(self, url: str, job: Job) -> None:
        lock = self._scene_locks.setdefault((url, job.scene_sha), asyncio.Lock())
        async with lock:
            if await self.client.has_scene(url, job.scene_sha):
                return
            path = await self.store.run(self.store.scene_path, job.scene_sha)
            if path is None:
                raise NodeRejected(f"scene {job.scene_sha} is not on the orchestrator any more")
            log.info("job %s: pushing scene %s to %s", job.id, job.scene_sha[:12], url)
            await self.client.put_scene(url, job.scene_sha, path)

    async def _until_lost(self, url: str) -> None:
        # Loss is a matter of the (injectable) clock passing a deadline: nothing to wait on.
        while not self.registry.is_lost(url):  # noqa: ASYNC110
            await asyncio.sleep(0.2)

    async def _attempt(
        self,
        url: str,
        job: Job,
        batch: QueuedBatch,
        errors: dict[int, str],
        collected: set[int],
        handle: dict[str, str],
    ) -> tuple[str, bool]:
        """Push the scene, submit, follow; returns (batch end state, node still answering)."""
        try:
            await self._ensure_scene(url, job)
            node_job = await self.client.submit(
                url, f"sha256:{job.scene_sha}", compact_frames(batch.frames), job.format
            )
            handle["node_job"] = node_job
            await self.store.run(self.store.set_node_job, batch.id, node_job)
            return await self._follow(url, job, batch, node_job, errors, collected), True
        except NodeJobGone as exc:
            log.warning("job %s batch %s on %s: %s", job.id, batch.id, url, exc)
            return "lost", True
        except NodeRejected as exc:
            log.warning("job %s batch %s on %s refused: %s", job.id, batch.id, url, exc)
            errors.update({f: str(exc) for f in batch.frames if f not in collected})
            return "failed", True
        except NodeError as exc:
            log.warning("job %s batch %s on %s: node not answering: %s", job.id, batch.id, url, exc)
            return "lost", False

    async def _follow(
        self,
        url: str,
        job: Job,
        batch: QueuedBatch,
        node_job: str,
        errors: dict[int, str],
        collected: set[int],
    ) -> str:
        """Poll the node job, collecting frames as they are saved; return the batch's end state."""
        misses = 0
        missing: dict[int, int] = {}
        spared: set[int] = set()
        interval = self.settings.poll_interval
        seen = 0
        while True:
            if self.is_cancelled(job.id):
                return "cancelled"
            try:
                status = await self.client.status(url, node_job)
            except NodeJobGone:
                raise
            except NodeError:
                misses += 1
                if misses >= 3 or self.registry.is_lost(url):
                    raise
                await asyncio.sleep(self.settings.poll_interval)
                continue
            misses = 0
            self.registry.seen(url)
            # True from the hook: poll at the base rate (the scheduler is timing the node).
            eager = self.on_status is not None and self.on_status(url, batch, status)
            final = status.get("state") in NODE_FINAL
            waiting = False
            infos = status.get("frames", [])
            started_any = any(frame_started(info) for info in infos)
            for info in infos:
                frame = int(info["frame"])
                if frame in collected or frame in errors or frame in spared:
                    continue
                if frame not in batch.frames:
                    continue
                if info.get("state") == "done":
                    try:
                        await self._collect(url, job, batch, node_job, frame, info.get("seconds"))
                        collected.add(frame)
                    except FrameMissing as exc:
                        # Done but not served yet: ask again; once the node job is over, a
                        # few more tries, then the frame counts as failed on this node.
                        missing[frame] = missing.get(frame, 0) + int(final)
                        if missing[frame] >= 3:
                            errors[frame] = str(exc)
                        else:
                            waiting = True
                elif info.get("state") == "failed":
                    if failure_counts(info, started_any):
                        errors[frame] = str(info.get("error") or status.get("error") or "failed")
                    else:
                        spared.add(frame)  # Blender died on an earlier frame: requeue as is
            if not final and len(collected) == len(batch.frames):
                # Every frame is collected: the batch is done. Blender may still be quitting
                # (freeing the scene: ~0.3 s, then one more poll to see it); the node job is
                # deleted right after the batch settles, so the node's slot is free at once.
                return "done"
            if final and not waiting:
                if status["state"] == "cancelled":
                    return "lost"  # cancelled under us (node shutting down): not the frames' fault
                for frame in batch.frames:
                    if frame not in collected and frame not in errors and frame not in spared:
                        errors[frame] = str(status.get("error") or f"node job {status['state']}")
                return "failed" if errors or spared else "done"
            # Poll fast while frames come in, back off while a long frame renders: 200 slots
            # polling every 0.3 s would be most of the farm's HTTP traffic, for nothing.
            progressed = len(collected) + len(errors) > seen or eager
            seen = len(collected) + len(errors)
            interval = poll_backoff(interval, progressed, self.settings.poll_interval)
            await asyncio.sleep(interval)

    async def _collect(
        self, url: str, job: Job, batch: QueuedBatch, node_job: str, frame: int, seconds: object
    ) -> None:
        # The batch owns its frames until it settles; only a cancel takes them away early.
        if self.is_cancelled(job.id):
            return
        dest = output_path(self.settings.renders_dir, job.id, frame, output_suffix(job.format))
        if not dest.exists():  # a crash after the rename but before the record: keep that file
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = part_path(dest, batch.id)
            try:
                size = await self.client.download(url, node_job, frame, tmp)
                if size == 0:
                    raise NodeRejected(f"frame {frame} from {url} is empty")
                os.replace(tmp, dest)
            finally:
                tmp.unlink(missing_ok=True)
        secs = float(seconds) if isinstance(seconds, int | float) else None
        if await self.store.run(self.store.collect_frame, job.id, frame, batch.id, secs):
            self.metrics.frames_rendered.inc()
            if secs is not None:
                self.metrics.frame_seconds.observe(secs)
