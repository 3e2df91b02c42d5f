"""Running one batch on one node: push the scene, submit, follow, and on each poll collect the
frames it found done, in one request (the node's frames.tar) and one store transaction.

The attempt races a watcher: when the registry declares the node lost, whatever request the
attempt is stuck in (a download from a frozen machine...) is abandoned at once. What happened is
returned as an `Outcome`; deciding what goes back to the queue is the scheduler's business.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from farm_common.frames import compact_frames
from orchestrator.metrics import Metrics
from orchestrator.nodes.archive import FrameFiles
from orchestrator.nodes.client import (
    ArchiveUnsupported,
    FrameMissing,
    NodeClient,
    NodeError,
    NodeJob,
    NodeJobGone,
    NodeRejected,
    SceneMissing,
)
from orchestrator.renders import output_path, output_suffix, part_path
from orchestrator.scheduling.policy import failure_counts, frame_started, poll_backoff, poll_base
from orchestrator.scheduling.registry import Registry
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import Job, QueuedBatch, Store

log = logging.getLogger(__name__)

# How long a collection waits at most while batches are on their way to idle slots.
FEED_FIRST_SECONDS = 0.25

NODE_FINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass
class Outcome:
    state: str  # done | failed | lost | cancelled
    answered: bool  # False: the node stopped answering (the worker waits for it)
    errors: dict[int, str] = field(default_factory=dict)  # frames that failed on this node
    collected: set[int] = field(default_factory=set)
    node_job: str | None = None
    refused: str | None = None  # the node renders none of the scene (render_node Job.refused)


@dataclass
class Fetched:
    """What one collection of a poll's done frames came to."""

    placed: list[int] = field(default_factory=list)  # in place (and recorded if still ours)
    failed: dict[int, str] = field(default_factory=dict)  # came broken: failed on this node
    missing: dict[int, str] = field(default_factory=dict)  # not served (yet): asked again


class BatchRunner:
    def __init__(
        self,
        settings: OrchestratorSettings,
        store: Store,
        registry: Registry,
        client: NodeClient,
        metrics: Metrics,
        is_cancelled: Callable[[str], bool],
        on_status: Callable[[str, QueuedBatch, dict[str, Any]], float | None] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.client = client
        self.metrics = metrics
        self.is_cancelled = is_cancelled
        self.on_status = on_status
        self._scene_locks: dict[tuple[str, str], asyncio.Lock] = {}
        # (node, scene sha) the node said it holds: no HEAD before each of its batches. A node
        # that lost it since answers the submit 404 (SceneMissing), and it is pushed again.
        self._scenes_held: set[tuple[str, str]] = set()
        self._following = 0  # batches whose node job is being polled
        # Batches on their way to an idle slot (taken, not yet on the node): see feed_started.
        self._feeding: set[str] = set()
        self._fed = asyncio.Event()
        self._fed.set()

    def feed_started(self, batch_id: str) -> None:
        """An idle slot waits for this batch: collections wait for it to reach its node (at
        most FEED_FIRST_SECONDS). Collecting can wait, an idle node cannot: at the start of a
        job the first batches go out before the frames of the fastest ones are fetched."""
        self._feeding.add(batch_id)
        self._fed.clear()

    def feed_done(self, batch_id: str) -> None:
        """The batch is on its node, or will never be (idempotent)."""
        self._feeding.discard(batch_id)
        if not self._feeding:
            self._fed.set()

    def base_interval(self) -> float:
        return poll_base(
            self.settings.poll_interval, self._following, self.settings.max_polls_per_second
        )

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
        return Outcome(
            state, answered, errors, collected, handle.get("node_job"), handle.get("refused")
        )

    async def _ensure_scene(self, url: str, job: Job) -> None:
        key = (url, job.scene_sha)
        if key in self._scenes_held:
            return
        lock = self._scene_locks.setdefault(key, asyncio.Lock())
        async with lock:
            if key in self._scenes_held:
                return  # pushed by the node's other slot while this one waited
            if not await self.client.has_scene(url, job.scene_sha):
                path = await self.store.run(self.store.scene_path, job.scene_sha)
                if path is None:
                    raise NodeRejected(f"scene {job.scene_sha} is not on the orchestrator any more")
                log.info("job %s: pushing scene %s to %s", job.id, job.scene_sha[:12], url)
                await self.client.put_scene(url, job.scene_sha, path)
            self._scenes_held.add(key)

    async def _submit(self, url: str, job: Job, batch: QueuedBatch) -> NodeJob:
        """Send the batch to the node, pushing the scene first if it does not hold it."""
        await self._ensure_scene(url, job)
        scene, frames = f"sha256:{job.scene_sha}", compact_frames(batch.frames)
        try:
            return await self.client.submit(url, scene, frames, job.format)
        except SceneMissing as exc:
            # The node lost it (a restart on a fresh disk, a cleanup): push it and try once more.
            log.info("job %s batch %s: %s; pushing it again", job.id, batch.id, exc)
            self._scenes_held.discard((url, job.scene_sha))
            await self._ensure_scene(url, job)
            return await self.client.submit(url, scene, frames, job.format)

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
            try:
                taken = await self._submit(url, job, batch)
            finally:
                self.feed_done(batch.id)
            handle["node_job"] = taken.id
            await self.store.run(self.store.set_node_job, batch.id, taken.id)
            self._following += 1  # counted against the farm's poll budget
            try:
                return await self._follow(url, job, batch, taken, errors, collected, handle), True
            finally:
                self._following -= 1
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
        taken: NodeJob,
        errors: dict[int, str],
        collected: set[int],
        handle: dict[str, str],
    ) -> str:
        """Poll the node job, collecting frames as they are saved; return the batch's end state
        (and in `handle["refused"]` why the node refuses the scene, when it does)."""
        node_job = taken.id
        misses = 0
        missing: dict[int, int] = {}
        spared: set[int] = set()
        interval = self.base_interval()
        seen = 0
        # Set: the node holds the next answer until the job changes. The first poll waits so
        # from the version the node gave at submit: a job just started has nothing to tell.
        since: str | None = taken.version
        while True:
            if self.is_cancelled(job.id):
                return "cancelled"
            try:
                asked = asyncio.get_running_loop().time()
                status = await self.client.status(url, node_job, wait=interval, since=since)
                if since is not None and status.get("version") == since:
                    # Not held (a node from before ?wait) and nothing changed: wait here.
                    await asyncio.sleep(
                        max(0.0, interval - (asyncio.get_running_loop().time() - asked))
                    )
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
            # From the hook: the scheduler wants to hear of the batch again within this long.
            wanted = None if self.on_status is None else self.on_status(url, batch, status)
            final = status.get("state") in NODE_FINAL
            waiting = False
            infos = status.get("frames", [])
            started_any = any(frame_started(info) for info in infos)
            ready: dict[int, float | None] = {}
            for info in infos:
                frame = int(info["frame"])
                if frame in collected or frame in errors or frame in spared:
                    continue
                if frame not in batch.frames:
                    continue
                if info.get("state") == "done":
                    seconds = info.get("seconds")
                    ready[frame] = float(seconds) if isinstance(seconds, int | float) else None
                elif info.get("state") == "failed":
                    if failure_counts(info, started_any):
                        errors[frame] = str(info.get("error") or status.get("error") or "failed")
                    else:
                        spared.add(frame)  # Blender died on an earlier frame: requeue as is
            if ready:
                fetched = await self._collect(url, job, batch, node_job, ready)
                collected.update(fetched.placed)
                errors.update(fetched.failed)
                for frame, why in fetched.missing.items():
                    # Done but not served yet: ask again; once the node job is over, a few
                    # more tries, then the frame counts as failed on this node.
                    missing[frame] = missing.get(frame, 0) + int(final)
                    if missing[frame] >= 3:
                        errors[frame] = why
                    else:
                        waiting = True
            if not final and len(collected) == len(batch.frames):
                # Every frame is collected: the batch is done. Blender may still be quitting
                # (freeing the scene: ~0.3 s, then one more poll to see it); the node job is
                # deleted right after the batch settles, so the node's slot is free at once.
                return "done"
            if final and not waiting:
                if status.get("refused"):
                    handle["refused"] = str(status["refused"])
                if status["state"] == "cancelled":
                    return "lost"  # cancelled under us (node shutting down): not the frames' fault
                for frame in batch.frames:
                    if frame not in collected and frame not in errors and frame not in spared:
                        errors[frame] = str(status.get("error") or f"node job {status['state']}")
                return "failed" if errors or spared else "done"
            # Poll fast while frames come in, back off while a long frame renders: 200 slots
            # polling every 0.3 s would be most of the farm's HTTP traffic, for nothing.
            progressed = len(collected) + len(errors) > seen
            seen = len(collected) + len(errors)
            interval = poll_backoff(interval, progressed, self.base_interval())
            if wanted is not None:
                interval = min(interval, max(wanted, self.settings.poll_interval))
            # The last frame of a batch (and the start of one queued behind another) is waited
            # for on the node, so the batch ends the moment its frame is saved; the others are
            # polled: a held request per frame would multiply the traffic for fast frames.
            version = status.get("version")
            left = sum(1 for info in infos if info.get("state") in ("pending", "rendering"))
            since = None
            if (
                isinstance(version, str)
                and not waiting
                and (left <= 1 or status["state"] == "queued")
            ):
                since = version
            else:
                await asyncio.sleep(interval)

    async def _collect(
        self, url: str, job: Job, batch: QueuedBatch, node_job: str, ready: dict[int, float | None]
    ) -> Fetched:
        """Fetch the frames `ready` (frame -> render seconds) in one archive and record them in
        one transaction; frame by frame from a node without archives."""
        # The batch owns its frames until it settles; only a cancel takes them away early.
        if self.is_cancelled(job.id):
            return Fetched()
        if not self._fed.is_set():
            with contextlib.suppress(TimeoutError):  # a long scene push holds nobody long
                await asyncio.wait_for(self._fed.wait(), FEED_FIRST_SECONDS)
        suffix = output_suffix(job.format)
        renders = self.settings.renders_dir
        files = FrameFiles(
            {f: output_path(renders, job.id, f, suffix) for f in ready},
            lambda dest: part_path(dest, batch.id),
        )
        why = f"frame done on {url} but not served"
        try:
            if self.client.serves_archives(url):
                try:
                    await self.client.download_archive(url, node_job, list(ready), files)
                except ArchiveUnsupported as exc:
                    log.info("job %s batch %s: %s; frame by frame", job.id, batch.id, exc)
                    await self._download_each(url, node_job, files)
                except FrameMissing as exc:
                    why = str(exc)
            else:
                await self._download_each(url, node_job, files)
        except NodeError:
            # What came before the node failed is in place: record it, as if frame by frame.
            await self._record(job, batch, files.placed, ready)
            raise
        finally:
            files.discard()
        await self._record(job, batch, files.placed, ready)
        if files.ignored:
            log.warning(
                "job %s batch %s: %s sent unexpected members %s",
                job.id, batch.id, url, files.ignored[:5],
            )  # fmt: skip
        settled = {*files.placed, *files.failed}
        return Fetched(files.placed, files.failed, {f: why for f in ready if f not in settled})

    async def _download_each(self, url: str, node_job: str, files: FrameFiles) -> None:
        """The frames of `files`, one request each (nodes from before frames.tar)."""
        for frame, dest in files.targets.items():
            if dest.exists():  # a crash after the rename but before the record: keep that file
                files.placed.append(frame)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = files.part(dest)
            try:
                size = await self.client.download(url, node_job, frame, tmp)
                if size == 0:
                    files.failed[frame] = f"frame {frame} from {url} is empty"
                    continue
                os.replace(tmp, dest)
                files.placed.append(frame)
            except FrameMissing:
                continue
            finally:
                tmp.unlink(missing_ok=True)

    async def _record(
        self, job: Job, batch: QueuedBatch, frames: list[int], seconds: dict[int, float | None]
    ) -> None:
        if not frames:
            return
        newly = await self.store.run(
            self.store.collect_frames, job.id, batch.id, [(f, seconds[f]) for f in frames]
        )
        self.metrics.frames_rendered.inc(len(newly))
        for frame in newly:
            secs = seconds[frame]
            if secs is not None:
                self.metrics.frame_seconds.observe(secs)
