"""The scheduler: job queues, one worker coroutine per node slot, and what a batch leaves behind.

Dynamic pull keeps every node busy until the queue is empty, so one slow or dead node cannot
decide the makespan. A batch that ends early (node lost, request failed, frames failed) gives
back only its frames that were not collected; the store decides, in one transaction, which go
back to the queue and which failed for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from farm_common.blendfile import opens
from farm_common.frames import compact_frames
from farm_common.protocol import (
    FINAL_JOB_STATES,
    BatchState,
    FrameState,
    JobDetail,
    JobState,
)
from orchestrator.metrics import Metrics
from orchestrator.nodes.client import NodeClient, NodeError
from orchestrator.renders import collected_units, output_suffix, video_path
from orchestrator.scheduling.batch_runner import BatchRunner
from orchestrator.scheduling.interfaces import (
    IsCancelled,
    NodeCalls,
    OnStatus,
    Runner,
    RunnerFactory,
    SchedulerMetrics,
    SchedulerSettings,
    SchedulerStore,
)
from orchestrator.scheduling.lanes import ROUND_TRIPS, LaneBook, SlotKey, SpeedBook
from orchestrator.scheduling.policy import (
    blender_matches,
    effective_bans,
    node_may_take,
    saved_version,
)
from orchestrator.scheduling.queue import Cut, JobQueue
from orchestrator.scheduling.registry import NODE_ACTIONS, Node, Registry
from orchestrator.scheduling.sizing import next_batch_size
from orchestrator.scheduling.video_jobs import encode_job
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import Job, QueuedBatch, Settled, Store
from orchestrator.video import VideoError, encode_video, ffmpeg_available

log = logging.getLogger(__name__)

# A slot's next batch is sent to its node this long before the current one should end, so the
# node starts it the moment the slot frees (no round trip, no poll in between).
PREFETCH_LEAD_SECONDS = 1.0
SPEEDS_SAVED_EVERY_SECONDS = 10.0  # at most; and at stop


def real_runner(
    settings: SchedulerSettings,
    store: SchedulerStore,
    registry: Registry,
    client: NodeCalls,
    metrics: SchedulerMetrics,
) -> RunnerFactory:
    """The real BatchRunner, for a scheduler on the real collaborators (a scheduler on fakes is
    given its runner)."""
    if not (
        isinstance(settings, OrchestratorSettings)
        and isinstance(store, Store)
        and isinstance(client, NodeClient)
        and isinstance(metrics, Metrics)
    ):
        raise TypeError("a scheduler on other collaborators than the real ones needs a runner")

    def make(is_cancelled: IsCancelled, on_status: OnStatus) -> Runner:
        return BatchRunner(
            settings, store, registry, client, metrics, is_cancelled, on_status=on_status
        )

    return make


@dataclass
class _Noted:
    """What the polls of one batch have taught the speed book already."""

    frames: set[int] = field(default_factory=set)
    startup: bool = False


def near_its_end(state: JobState, left: int, spf: float | None) -> bool:
    """Whether a batch is close enough to its end that its slot's next batch goes to the node
    now: over, or its frames left (`left`, at `spf` seconds each) end within the lead."""
    if state in FINAL_JOB_STATES:
        return True
    return state == JobState.RUNNING and spf is not None and left * spf <= PREFETCH_LEAD_SECONDS


def poll_within(
    state: JobState, left: int, spf: float | None, *, waiting_for_end: bool
) -> float | None:
    """How soon a batch's node job is polled again at the latest (None: as the runner likes).

    At once while the node's speed is not known or the batch waits on the node behind the
    slot's current one (it starts the moment that one ends); when the batch should be near its
    end (`waiting_for_end`: its slot waits for that moment), so the slot's next batch is queued
    on the node in time.
    """
    if spf is None or state == JobState.QUEUED:
        return 0.0
    if waiting_for_end and state == JobState.RUNNING:
        return left * spf - PREFETCH_LEAD_SECONDS
    return None


# (event, subject, value): "job.completed", "job", {...}
Events = Callable[[str, str, dict[str, Any]], None]

# How long a requeue waits for a cancelled job's batches in flight to stop.
STOPPING_WAIT_SECONDS = 30.0


class Scheduler:
    def __init__(
        self,
        settings: SchedulerSettings,
        store: SchedulerStore,
        registry: Registry,
        client: NodeCalls,
        metrics: SchedulerMetrics,
        clock: Callable[[], float] = time.time,
        *,
        runner: RunnerFactory | None = None,
        events: Events | None = None,
    ) -> None:
        self.settings = settings
        # Told of jobs that end and nodes that are lost (webhooks.Webhooks.emit): never awaited.
        self.events = events
        self.store = store
        self.registry = registry
        self.client = client
        self.metrics = metrics
        self.clock = clock
        # Per job, forgotten once the job is final and none of its batches is in flight
        # (`_settled`): an orchestrator that runs for months must not grow with every job.
        self._queues: dict[str, JobQueue] = {}
        self._jobs: dict[str, Job] = {}
        self._cancelled: set[str] = set()
        self._batch_failures: dict[str, dict[str, int]] = {}
        # job -> {node: why}: nodes that refuse the job's scene (render_node Job.refused)
        self._refused: dict[str, dict[str, str]] = {}
        self._in_flight: dict[str, int] = {}  # batches taken from the queue and not settled
        # Jobs that wait for the jobs they come after ("after"), with their batches.
        self._held: dict[str, list[QueuedBatch]] = {}
        self._videos: dict[str, asyncio.Task[None]] = {}  # video jobs encoding now
        self._final: set[str] = set()  # final jobs, kept until their batches in flight settled
        self._workers: dict[SlotKey, asyncio.Task[None]] = {}
        self._changed = asyncio.Event()  # replaced by a fresh one each time it is set
        self.speeds = SpeedBook()
        self._speeds_saved = 0  # SpeedBook.changes when last saved
        self._speeds_saved_at = float("-inf")  # registry clock at the last save
        self.lanes = LaneBook()
        self._slot_of: dict[str, SlotKey] = {}  # running batch id -> its slot
        # The job each slot of a bpy node rendered last: its worker holds that job's scene
        # loaded, so the job's next batch there pays no start-up (render_node/warm.py).
        self._warm: dict[SlotKey, str] = {}
        self._near_end: dict[str, asyncio.Event] = {}
        self._observed: dict[str, _Noted] = {}  # batch id -> what its polls taught
        # Nodes that stopped answering a batch's requests, and since when (registry clock).
        self._silent: dict[str, float] = {}
        self._monitor: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._stopping = False
        make_runner = runner or real_runner(settings, store, registry, client, metrics)
        self.runner = make_runner(lambda job_id: job_id in self._cancelled, self._on_status)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        for url in self.settings.node:
            self.registry.add_static(url)
        states = await self.store.run(self.store.load_learned, "node_states")
        if isinstance(states, dict):
            self.registry.admin.update({str(u): str(s) for u, s in states.items()})
        kept = SpeedBook.load(await self.store.run(self.store.load_learned, "speeds"))
        if kept.frame:
            self.speeds = kept
            nodes = {node for node, _ in kept.frame}
            log.info("node speeds from before the restart: %d nodes, %d scenes", len(nodes),
                     len({scene for _, scene in kept.frame}))  # fmt: skip
        queue, orphans = await self.store.run(self.store.recover, self._on_disk)
        for batch in queue:
            await self._remember(batch.job)
            self._queues.setdefault(batch.job, JobQueue()).add([batch])
        for job_id in [j for j in self._queues if self._jobs[j].after_ids]:
            if await self._hold(self._jobs[job_id], list(self._queues[job_id].batches)):
                self._queues.pop(job_id, None)
        for job in await self.store.run(self.store.list_jobs, 1_000_000):
            if job.state in (JobState.QUEUED, JobState.RUNNING):
                if job.is_video:  # encoded again from the start
                    await self.enqueue(job, [])
                    continue
                await self.store.run(self.store.finish_if_complete, job.id, self.clock())
        for node, node_job in orphans:
            log.info("restart: cancelling orphaned node job %s on %s", node_job, node)
            self._spawn(self._forget_node_job(node, node_job))
        if queue:
            log.info("restart: %d batches of unfinished jobs back in the queue", len(queue))
        self._monitor = asyncio.create_task(self._monitor_loop(), name="monitor")

    async def stop(self) -> None:
        self._stopping = True
        with contextlib.suppress(TimeoutError):  # a stuck store must not hang the stop
            await asyncio.wait_for(self._save_speeds(force=True), timeout=5)
        tasks = [
            t
            for t in (self._monitor, *self._workers.values(), *self._background,
                      *self._videos.values())
            if t
        ]  # fmt: skip
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded: shutdown must not hang on a task that swallowed its cancellation.
            _, pending = await asyncio.wait(tasks, timeout=5)
            if pending:
                log.warning("%d tasks did not stop in time", len(pending))

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_disk(self, job_id: str, pieces: int) -> set[int]:
        return collected_units(self.settings.renders_dir, job_id, pieces)

    async def _remember(self, job_id: str) -> Job | None:
        if job_id not in self._jobs:
            job = await self.store.run(self.store.get_job, job_id)
            if job is None:
                return None
            self._jobs[job_id] = job
        return self._jobs[job_id]

    # -- jobs ---------------------------------------------------------------------------------
    async def enqueue(self, job: Job, batches: list[QueuedBatch]) -> None:
        """Queue a new job's batches, or a requeued job's new ones (batches queued already
        are not added twice). A job cancelled or ended before is taken up again once its
        batches still in flight have stopped (they stop within a poll)."""
        if job.id in self._final or job.id in self._cancelled:
            for _ in range(int(STOPPING_WAIT_SECONDS / 0.1)):
                if job.id not in self._in_flight:
                    break
                await asyncio.sleep(0.1)
            self._final.discard(job.id)
            self._cancelled.discard(job.id)
            self._batch_failures.pop(job.id, None)  # what its nodes failed starts over
            self._refused.pop(job.id, None)
        self._jobs[job.id] = job
        if job.after_ids and await self._hold(job, batches):
            return
        if job.is_video:
            self._start_video(job)
            return
        queue = self._queues.setdefault(job.id, JobQueue())
        queued = {b.id for b in queue.batches}
        queue.add([b for b in batches if b.id not in queued])
        log.info(
            "job %s queued: %d frames in %d batches (priority %d)",
            job.id, job.total, len(batches), job.priority,
        )  # fmt: skip
        self._notify()

    async def _waits_for(self, job: Job) -> str | None:
        """What the job still waits for: None when every job it comes after completed; "wait"
        while one is unfinished; why it fails when one failed, was cancelled or is gone."""
        states = await self.store.run(self.store.job_states, job.after_ids)
        for other in job.after_ids:
            state = states.get(other)
            if state is None:
                return f"job {other}, which it comes after, is not on the farm any more"
            if state in (JobState.FAILED, JobState.CANCELLED):
                return f"job {other}, which it comes after, {state}"
        done = all(states[o] == JobState.COMPLETED for o in job.after_ids)
        return None if done else "wait"

    async def _hold(self, job: Job, batches: list[QueuedBatch]) -> bool:
        """Keep the job's batches back while a job it comes after is unfinished, or fail it
        when one of them failed; False: it may start now."""
        why = await self._waits_for(job)
        if why is None:
            return False
        held = self._held.setdefault(job.id, [])
        known = {b.id for b in held}
        held.extend(b for b in batches if b.id not in known)
        if why != "wait":
            await self._fail_held(job, why)
        else:
            log.info("job %s waits for %s", job.id, ", ".join(job.after_ids))
        return True

    async def _fail_held(self, job: Job, why: str) -> None:
        self._held.pop(job.id, None)
        if job.is_video:
            count = job.total
            await self.store.run(self.store.end_video, job.id, why, self.clock())
        else:
            count, _ = await self.store.run(
                self.store.fail_waiting_frames, job.id, why, [], self.clock()
            )
        log.error("job %s fails: %s (%d frames)", job.id, why, count)
        self._ended(job.id)
        self._spawn(self._tell_job_ended(job.id))

    async def _release_held(self) -> None:
        """A job ended: the jobs waiting for it start, or fail with it (and so on down)."""
        changed = True
        while changed:
            changed = False
            for job_id in list(self._held):
                job = self._jobs.get(job_id)
                why = "wait" if job is None else await self._waits_for(job)
                if job is None or why == "wait" or job_id not in self._held:
                    continue
                changed = True
                if why is not None:
                    await self._fail_held(job, why)
                    continue
                log.info("job %s: the jobs it comes after completed; it starts", job_id)
                held = self._held.pop(job_id)
                if job.is_video:
                    self._start_video(job)
                    continue
                self._queues.setdefault(job_id, JobQueue()).add(held)
                self._notify()

    def _start_video(self, job: Job) -> None:
        if job.id not in self._videos:
            self._videos[job.id] = asyncio.create_task(self._run_video(job), name=f"video {job.id}")

    async def _run_video(self, job: Job) -> None:
        """Encode a video job (video_jobs.encode_job) and end it; a cancel stops ffmpeg."""
        try:
            if not await self.store.run(self.store.start_video, job.id, self.clock()):
                return
            log.info("job %s: encoding frames %s of job %s at %s fps", job.id, job.frames_spec,
                     job.source, job.fps)  # fmt: skip
            error = await encode_job(job, self.store, self.settings.renders_dir)
            state = await self.store.run(self.store.end_video, job.id, error, self.clock())
            if state:
                if error:
                    log.error("job %s failed: %s", job.id, error)
                self._job_ended(job.id, state)
                self._forget_if_settled(job.id)
        except Exception:  # a bug must not leave the job running for ever unseen
            log.exception("job %s: the video job stopped", job.id)
            await self.store.run(
                self.store.end_video, job.id, "the orchestrator failed (see its log)", self.clock()
            )
            self._job_ended(job.id, JobState.FAILED)
        finally:
            self._videos.pop(job.id, None)

    async def delete(self, job_id: str) -> str | None:
        """Remove an ended job from the store (its files are the caller's); returns why not:
        "missing", its state while it is unfinished, "stopping" while batches of it are still
        in flight (a cancel takes a moment)."""
        job = await self.store.run(self.store.get_job, job_id)
        if job is None:
            return "missing"
        if job.state in (JobState.QUEUED, JobState.RUNNING):
            return str(job.state)
        if job_id in self._in_flight:
            return "stopping"
        why = await self.store.run(self.store.delete_job, job_id)
        if why is None:
            self._ended(job_id)
            self._forget_if_settled(job_id)
            log.info("job %s deleted", job_id)
        return why

    async def cancel(self, job_id: str) -> bool:
        node_jobs = await self.store.run(self.store.cancel_job, job_id, self.clock())
        job = await self.store.run(self.store.get_job, job_id)
        if job is None or job.state != JobState.CANCELLED:
            return False
        # Its batches in flight ask the runner's `is_cancelled`: the id stays until they settled.
        self._cancelled.add(job_id)
        self._ended(job_id)
        await asyncio.gather(
            *(self._forget_node_job(node, nj) for node, nj in node_jobs), return_exceptions=True
        )
        log.info("job %s cancelled; node jobs cancelled: %s", job_id, node_jobs)
        self._held.pop(job_id, None)
        if video := self._videos.get(job_id):
            video.cancel()  # encode_video kills ffmpeg's group
        self._spawn(self._tell_job_ended(job_id))
        self._spawn(self._release_held())
        self._forget_if_settled(job_id)
        self._notify()
        return True

    async def _tell_job_ended(self, job_id: str) -> None:
        """job.completed / job.failed / job.cancelled, to the webhooks (`events`)."""
        if self.events is None:
            return
        job = await self.store.run(self.store.get_job, job_id)
        if job is None:
            return
        frames = {"done": job.done, "failed": job.failed}
        if job.pieces > 1:  # counted in whole frames: a split frame is done once put together
            frames = await self.store.run(self.store.tiled_counts, job.id, job.pieces)
            frames.pop("rendering", None)
        self.events(f"job.{job.state}", "job", {
            "id": job.id, "state": job.state, "scene": job.scene_name or job.scene,
            "frames_spec": job.frames_spec, "frames": {"total": job.frame_count, **frames},
            "created": job.created, "started": job.started, "finished": job.finished,
            "status_url": f"/render/{job.id}",
        })  # fmt: skip

    def _job_ended(self, job_id: str, state: str) -> None:
        """The job ended by itself (completed or failed): say so, and start what waited."""
        self._ended(job_id)
        log.info("job %s %s", job_id, state)
        self._spawn(self._tell_job_ended(job_id))
        self._spawn(self._release_held())

    def _ended(self, job_id: str) -> None:
        """The job is final: nothing more of it is taken; its entries go with its last batch."""
        self._queues.pop(job_id, None)
        self._final.add(job_id)

    def _settled(self, job_id: str) -> None:
        """A batch of the job taken from the queue is over (settled, or never dispatched)."""
        left = self._in_flight.get(job_id, 0) - 1
        if left > 0:
            self._in_flight[job_id] = left
        else:
            self._in_flight.pop(job_id, None)
        self._forget_if_settled(job_id)

    def _forget_if_settled(self, job_id: str) -> None:
        if job_id in self._final and job_id not in self._in_flight:
            self._final.discard(job_id)
            self._cancelled.discard(job_id)
            self._jobs.pop(job_id, None)
            self._queues.pop(job_id, None)
            self._batch_failures.pop(job_id, None)
            self._refused.pop(job_id, None)
            for slot in [s for s, j in self._warm.items() if j == job_id]:
                del self._warm[slot]
            self.runner.forget_job(job_id)

    def tracked_jobs(self) -> set[str]:
        """The jobs the scheduler holds anything of (finished ones drop out)."""
        books: list[Iterable[str]] = [
            self._queues, self._jobs, self._cancelled, self._batch_failures, self._refused,
            self._in_flight, self._final, self._held, self._videos,
        ]  # fmt: skip
        return set().union(*books)

    def queued_batches(self) -> int:
        """Batches waiting, over all jobs (safe to call from the API's thread)."""
        return sum(len(q) for q in list(self._queues.values()))

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- nodes --------------------------------------------------------------------------------
    async def _monitor_loop(self) -> None:
        lost_before: set[str] = set()
        while True:
            try:
                lost_before = await self._monitor_round(lost_before)
            except Exception:
                # The monitor starts every slot's worker: one round's bug must not end it.
                log.exception("node monitor: a round failed; the next one goes on")
            await asyncio.sleep(self.settings.probe_interval_seconds)

    async def _monitor_round(self, lost_before: set[str]) -> set[str]:
        """Probe static nodes, forget nodes gone, log losses and returns, start workers;
        returns the nodes lost now."""
        await asyncio.gather(
            *(self._probe(url) for url in self.registry.static_urls()), return_exceptions=True
        )
        for moved in self.registry.forget_moved():
            self._silent.pop(moved.url, None)
            log.info("node %s registers as %s now; the old address is forgotten",
                     moved.url, moved.moved_to)  # fmt: skip
        for gone in self.registry.forget_lost():
            self._silent.pop(gone.url, None)
            log.info("node %s lost for long: forgotten (it registers again if it returns)",
                     gone.url)  # fmt: skip
        lost = {n.url for n in self.registry.nodes() if self.registry.is_lost(n.url)}
        for url in lost - lost_before:
            node = self.registry.get(url)
            batches = sorted(node.current_batches) if node else []
            log.warning("node %s lost (no answer); its batches %s go back", url, batches)
            if self.events is not None and node is not None:
                self.events("node.lost", "node", {"url": url, "name": node.name,
                                                  "batches": batches})  # fmt: skip
        for url in lost_before - lost:
            if self.registry.get(url) is not None:  # not forgotten (moved)
                log.info("node %s is back", url)
        self._reconcile_workers()
        await self._save_speeds()
        return lost

    async def _save_speeds(self, *, force: bool = False) -> None:
        """Keep the measured speeds in the store when they moved: at most every
        SPEEDS_SAVED_EVERY_SECONDS (a restart loses what was measured since), or now (`force`)."""
        changes = self.speeds.changes
        if changes == self._speeds_saved:
            return
        now = self.registry.clock()  # monotonic: a step of the wall clock must not stop the saves
        if not force and now - self._speeds_saved_at < SPEEDS_SAVED_EVERY_SECONDS:
            return
        self._speeds_saved_at = now
        try:
            await self.store.run(
                self.store.save_learned, "speeds", self.speeds.dump(), self.clock()
            )
        except Exception as exc:
            # The monitor loop must go on: losing the speeds costs blind batches, no more.
            log.warning("could not save the node speeds: %s", exc)
            return
        self._speeds_saved = changes

    async def _probe(self, url: str) -> None:
        node = self.registry.get(url)
        # A node whose batches are being polled answered recently: no need to ask it again.
        # A third of the loss timeout still leaves two probes before a silent node is lost.
        fresh = max(self.settings.probe_interval_seconds, self.settings.node_timeout_seconds / 3)
        if node and node.last_seen is not None and self.registry.clock() - node.last_seen < fresh:
            return
        with contextlib.suppress(NodeError):
            self.registry.update(url, (await self.client.info(url)).model_dump())

    async def set_node_state(self, url: str, action: str) -> bool:
        """An operator's `drain`, `pause` or `resume` of a node (registry.NODE_ACTIONS), kept
        in the store for a restart; or the node's own `leave`. False: no such node."""
        if self.registry.get(url) is None:
            return False
        if action == "leave":
            log.info("node %s is going away: its batches go back now", url)
            self.registry.gone(url)
            self._notify()
            return True
        state = NODE_ACTIONS[action]
        if state is None:
            self.registry.admin.pop(url, None)
        else:
            self.registry.admin[url] = state
        log.info("node %s: %s by an operator", url, action)
        await self.store.run(
            self.store.save_learned, "node_states", dict(self.registry.admin), self.clock()
        )
        self._reconcile_workers()
        self._notify()  # its slots' workers stop taking batches (a pause: the runner drops them)
        return True

    def _reconcile_workers(self) -> None:
        for key, task in list(self._workers.items()):
            if task.done():
                del self._workers[key]
        for node in self.registry.working():
            for i in range(node.slots):
                slot = SlotKey(node.url, i)
                if slot not in self._workers:
                    task = asyncio.create_task(self._worker(slot), name=f"{node.url}#{i}")
                    self._workers[slot] = task

    def on_node_seen(self) -> None:
        """A node registered or heartbeated: start workers for new slots, wake idle ones."""
        self._reconcile_workers()
        self._notify()

    # -- workers ------------------------------------------------------------------------------
    async def _worker(self, slot: SlotKey) -> None:
        """Keep one slot of a node busy: its batch, and the next one queued on the node before
        the current one ends (so Blender starts again the moment the slot frees)."""
        url = slot.url
        running: list[tuple[asyncio.Task[bool], asyncio.Event]] = []
        try:
            while not self._stopping:
                node = self.registry.get(url)
                # A node moved to another URL, drained or paused takes no more here; what runs
                # is awaited below (a paused node's batches are dropped by the runner).
                if node is None or slot.slot >= node.slots or not self.registry.takes_work(url):
                    return
                for entry in [r for r in running if r[0].done()]:
                    running.remove(entry)
                    if not entry[0].result():
                        await self._await_answer(url)
                changed = self._changed
                busy = len(running) >= 2 or (running and not running[-1][1].is_set())
                cut = None if busy else self._take_safely(slot, ahead=bool(running))
                if cut is None:
                    waits = [asyncio.ensure_future(changed.wait())]
                    if running and not running[-1][1].is_set():
                        waits.append(asyncio.ensure_future(running[-1][1].wait()))
                    try:
                        await asyncio.wait(
                            [*waits, *(task for task, _ in running)],
                            timeout=0.5,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        for waiter in waits:
                            waiter.cancel()
                    continue
                near_end = asyncio.Event()
                self._near_end[cut.batch.id] = near_end
                # A slot with nothing to render waits for this batch: collection waits too.
                idle = not running
                task = asyncio.create_task(self._run_safely(slot, cut, idle=idle))
                running.append((task, near_end))
        except Exception:
            # The monitor starts the slot a new worker next round; the batches it runs finish
            # below, each settled by `_run_safely`.
            log.exception("slot %s/%d: its worker failed", url, slot.slot)
        finally:
            if self._stopping:
                for task, _ in running:
                    task.cancel()
            await asyncio.gather(*(task for task, _ in running), return_exceptions=True)

    async def _run_safely(self, slot: SlotKey, cut: Cut, *, idle: bool = False) -> bool:
        batch = cut.batch
        if idle:
            self.runner.feed_started(batch.id)
        try:
            return await self._run_batch(slot.url, cut)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "batch %s of job %s on %s: unexpected error", batch.id, batch.job, slot.url
            )
            # As for a node that stopped answering: no more batches for it until it answers.
            self._silent[slot.url] = self.registry.clock()
            await self._give_back(batch)
            return False
        finally:
            self.runner.feed_done(batch.id)
            self._near_end.pop(batch.id, None)
            self._observed.pop(batch.id, None)
            self._slot_of.pop(batch.id, None)
            self.lanes.remove(slot, batch.id)
            self._settled(batch.job)

    async def _give_back(self, batch: QueuedBatch) -> None:
        """Settle a batch whose run broke off (a bug): its frames go back to the queue rather
        than stay 'rendering' for good."""
        job = self._jobs.get(batch.job)
        try:
            settled = await self._settle(batch, BatchState.LOST, {}, job)
        except Exception:
            log.exception("batch %s of job %s could not be given back", batch.id, batch.job)
            return
        if settled.job_state:
            self._ended(batch.job)

    async def _settle(
        self, batch: QueuedBatch, state: BatchState, errors: dict[int, str], job: Job | None
    ) -> Settled:
        """Record how the batch ended; frames it gives back go to the front of its job's queue
        (retried, and failed for good, among the nodes that may still render the job)."""
        nodes = [] if job is None else self._nodes_for(job, self.registry.live())
        settled = await self.store.run(
            self.store.settle_batch,
            batch.id, state, errors, {n.url for n in nodes}, self.settings.max_attempts,
            self.clock(),
        )  # fmt: skip
        if settled.requeued:
            self._queues.setdefault(batch.job, JobQueue()).add(settled.requeued, front=True)
            self._notify()
        return settled

    async def _await_answer(self, url: str) -> None:
        """After a failed request, wait until the node answers again (or is lost)."""
        start = self.registry.clock()
        while not self.registry.is_lost(url):
            node = self.registry.get(url)
            if node and node.last_seen is not None and node.last_seen > start:
                return
            await asyncio.sleep(0.2)

    def _nodes_for(self, job: Job, nodes: list[Node]) -> list[Node]:
        """Those of `nodes` that may render `job`: those running the Blender it asked for (any,
        when it asked for none), able to open its scene (not older than the Blender that saved
        it), on the device it asked for, with the tags it asked for, that did not refuse its
        scene. Its frames are retried, and fail for good, among these alone."""
        refused = self._refused.get(job.id)
        tags = job.tag_set
        if not refused and not (job.blender_version or job.device or job.saved_by or tags):
            return nodes
        refused = refused or {}
        saved = saved_version(job.saved_by)
        return [
            n
            for n in nodes
            if n.url not in refused
            and blender_matches(n.blender_version, job.blender_version)
            and (not job.device or n.device == job.device)
            and opens(n.blender_version, saved)
            and tags <= n.tags
        ]

    def _bans(self, job_id: str, live: set[str]) -> set[str]:
        """Nodes that get no more batches of the job (they failed too many of them)."""
        failures = self._batch_failures.get(job_id, {})
        banned = {n for n, count in failures.items() if count >= self.settings.max_attempts}
        return effective_bans(banned, live) if banned else banned

    def _take_safely(self, slot: SlotKey, *, ahead: bool) -> Cut | None:
        """`_take`, but a bug (or a figure a node got past the checks) costs this slot one
        round, never its worker: a dead worker would starve the node for good."""
        try:
            return self._take(slot, ahead=ahead)
        except Exception:
            log.exception("slot %s/%d: choosing its next batch failed", slot.url, slot.slot)
            return None

    def _take(self, slot: SlotKey, *, ahead: bool) -> Cut | None:
        """The next batch for `slot`, cut to its speed when the job allows; None: nothing now.

        `ahead`: the slot is still rendering; only a batch of known size is queued behind.
        """
        url = slot.url
        warm = self._warm.get(slot)

        def order(job_id: str) -> tuple[int, bool, int]:
            # Among jobs of one priority, the one whose scene the slot holds loaded first.
            job = self._jobs[job_id]
            return (-job.priority, job_id != warm, job.seq)

        node = self.registry.get(url)
        if url in self._silent and node is not None:
            if node.last_seen is None or node.last_seen <= self._silent[url]:
                return None  # not answered since a batch's requests failed
            del self._silent[url]
        every = self.registry.working()
        for job_id in sorted(self._queues, key=order):
            queue = self._queues[job_id]
            job = self._jobs[job_id]
            if ahead and not job.adaptive:
                continue
            nodes = self._nodes_for(job, every)
            live = {node.url for node in nodes}
            if url not in live:
                continue  # not the Blender the job asked for
            bans = self._bans(job_id, live)
            head = next((b for b in queue.batches if node_may_take(url, b.avoid, live, bans)), None)
            if head is None:
                continue
            size = 0
            if job.adaptive:
                blind = ahead and self.speeds.seconds_per_frame(url, job.speed_key) is None
                size = 0 if blind else self._size(slot, job, queue, nodes, head, bans)
                if size == 0:
                    continue  # faster slots will render these first (or: speed not known yet)
            cut = queue.take(head, size)
            if not queue:
                del self._queues[job_id]
            # Booked at once: the next slot to ask must see this one's new work.
            self._slot_of[cut.batch.id] = slot
            self._in_flight[job_id] = self._in_flight.get(job_id, 0) + 1
            spf = self.speeds.seconds_per_frame(url, job.speed_key)
            overhead = self._overhead(slot, job_id)
            self.lanes.add(slot, cut.batch.id, len(cut.batch.frames), spf, overhead, self.clock())
            if node is not None and node.engine == "bpy":
                self._warm[slot] = job_id
            else:
                self._warm.pop(slot, None)
            return cut
        return None

    def _overhead(self, slot: SlotKey, job_id: str) -> float:
        """What one more batch of the job costs `slot` before its first frame: the round
        trips alone on a slot that holds the job's scene loaded, else the measured start-up."""
        if self._warm.get(slot) == job_id:
            return ROUND_TRIPS
        return self.speeds.overhead(slot.url)

    def _size(
        self,
        slot: SlotKey,
        job: Job,
        queue: JobQueue,
        nodes: list[Node],
        head: QueuedBatch,
        bans: set[str],
    ) -> int:
        """How many frames `slot` takes from `job` now (see orchestrator/sizing.py); only slots
        that may take `head` share the work."""
        url = slot.url
        now = self.clock()
        scene = job.speed_key
        others = []
        live = {node.url for node in nodes}
        for node in nodes:
            if node.url != url and not node_may_take(node.url, head.avoid, live, bans):
                continue
            spf = self.speeds.seconds_per_frame(node.url, scene)
            keys = (SlotKey(node.url, i) for i in range(node.slots))
            others += [
                self.lanes.lane(key, spf, self._overhead(key, job.id), now)
                for key in keys
                if key != slot
            ]
        me = self.lanes.lane(
            slot, self.speeds.seconds_per_frame(url, scene), self._overhead(slot, job.id), now
        )
        return next_batch_size(
            me,
            others,
            queue.frames,
            now,
            blind=len(head.frames),
            max_seconds=self.settings.max_batch_seconds,
            max_frames=self.settings.max_sized_batch,
        )

    def _on_status(self, url: str, batch: QueuedBatch, status: JobDetail) -> float | None:
        """A poll of a batch's node job: learn the node's speed, see the batch's end coming.

        Returns how soon to poll again at the latest (None: as the runner likes); see
        `poll_within`.
        """
        job = self._jobs.get(batch.job)
        slot = self._slot_of.get(batch.id)
        if job is None or slot is None:
            return None
        noted = self._observed.setdefault(batch.id, _Noted())
        times = []
        left = 0
        for info in status.frames:
            if info.state in (FrameState.PENDING, FrameState.RENDERING):
                left += 1
            elif (
                info.state == FrameState.DONE
                and info.seconds is not None
                and info.frame not in noted.frames
            ):
                # Once: a frame is reported done by every later poll of its batch.
                noted.frames.add(info.frame)
                times.append(info.seconds)
        if times:
            self.speeds.observe_frame(url, job.speed_key, sum(times) / len(times))
        if status.startup_seconds is not None and not noted.startup:
            noted.startup = True
            if not status.warm:  # a warm slot's start-up is none: not the node's
                self.speeds.observe_startup(url, status.startup_seconds)
        spf = self.speeds.seconds_per_frame(url, job.speed_key)
        if status.state == JobState.RUNNING:
            self.lanes.progress(slot, batch.id, left, spf, self.clock())
        near_end = self._near_end.get(batch.id)
        if near_end is not None and near_its_end(status.state, left, spf):
            near_end.set()
        waiting = near_end is not None and not near_end.is_set()
        return poll_within(status.state, left, spf, waiting_for_end=waiting)

    async def _run_batch(self, url: str, cut: Cut) -> bool:
        """Render one batch on one node; False when the node stopped answering."""
        batch = cut.batch
        job = await self._remember(batch.job)
        node = self.registry.get(url)
        if job is None:
            self._ended(batch.job)  # not in the store any more
            return True
        if node is None or batch.job in self._cancelled:
            return True
        frames_spec = compact_frames(batch.frames)
        dispatched = await self.store.run(
            self.store.dispatch_batch, batch, url, self.clock(), cut.absorbed, cut.remainder
        )
        if not dispatched:
            self._ended(job.id)  # the store has it over: cancelled or ended meanwhile
            return True
        node.current_batches.add(batch.id)
        log.info("job %s batch %s frames %s -> %s", job.id, batch.id, frames_spec, url)
        try:
            outcome = await self.runner.run(url, job, batch)
        finally:
            node.current_batches.discard(batch.id)
        state, errors, collected = outcome.state, outcome.errors, outcome.collected
        if not outcome.answered:
            # Before its frames go back to the queue: this node's slots must not take them
            # (a worker queueing ahead would), until the node answers again.
            self._silent[url] = self.registry.clock()
        if errors:
            failures = self._batch_failures.setdefault(job.id, {})
            failures[url] = failures.get(url, 0) + 1
        if outcome.refused:
            # Before the frames settle: they are retried among the nodes that did not refuse.
            refused = self._refused.setdefault(job.id, {})
            if url not in refused:
                log.warning("job %s: node %s refuses the scene, and gets no more of the job: %s",
                            job.id, url, outcome.refused)  # fmt: skip
            refused[url] = outcome.refused
        settled = await self._settle(batch, state, errors, job)
        node.frames_rendered += len(collected)
        self.metrics.frames_retried.inc(settled.retried)
        self.metrics.frames_failed.inc(len(settled.failed))
        for frame in settled.failed:
            log.error("job %s frame %d failed for good: %s", job.id, frame, errors.get(frame))
        if settled.requeued:
            log.info(
                "job %s batch %s (%s on %s) ended %s: frames %s back in the queue",
                job.id, batch.id, frames_spec, url, state,
                compact_frames(f for b in settled.requeued for f in b.frames),
            )  # fmt: skip
        job_state = settled.job_state
        if outcome.refused and not job_state and not self._nodes_for(job, self.registry.live()):
            job_state = await self._fail_refused(job)
        if job_state:
            self._job_ended(job.id, job_state)
            if job.video:
                self._spawn(self._make_video(job))
        if outcome.node_job is not None:  # collected or abandoned: its files can go
            self._spawn(self._forget_node_job(url, outcome.node_job))
        return outcome.answered

    async def _fail_refused(self, job: Job) -> str | None:
        """Every live node refused the job's scene: its frames waiting for a node fail now,
        with the nodes' reason, rather than each batch trying three of them in turn."""
        refused = self._refused[job.id]
        self._queues.pop(job.id, None)
        count, state = await self.store.run(
            self.store.fail_waiting_frames, job.id, next(iter(refused.values())), list(refused),
            self.clock(),
        )  # fmt: skip
        self.metrics.frames_failed.inc(count)
        log.error("job %s: every live node refuses its scene (%s): %d frames failed",
                  job.id, ", ".join(sorted(refused)), count)  # fmt: skip
        return state

    async def _make_video(self, job: Job) -> None:
        """The preview video of a finished job, from the frames that were collected."""
        frames = await self.store.run(self.store.done_frames, job.id, job.pieces)
        if not frames:
            return
        if not ffmpeg_available():
            log.warning("job %s: no preview video, ffmpeg is not installed", job.id)
            return
        out = video_path(self.settings.renders_dir, job.id)
        try:
            await encode_video(out.parent, frames, out, suffix=output_suffix(job.format))
            log.info("job %s: preview video %s (%d frames)", job.id, out, len(frames))
        except VideoError as exc:
            log.error("job %s: preview video failed: %s", job.id, exc)

    async def _forget_node_job(self, url: str, node_job: str) -> None:
        """Cancel a node job / remove its files there; best effort."""
        try:
            await self.client.delete(url, node_job)
        except NodeError as exc:
            log.info("could not delete node job %s on %s: %s", node_job, url, exc)
