"""The scheduler's decisions, on a fake runner and fake node calls, a real store on tmp_path and
a registry on a fake clock: which slot gets which batch, and what the scheduler keeps of a job."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_common.protocol import (
    BatchState,
    FrameCounts,
    FrameState,
    FrameStatus,
    JobDetail,
    JobState,
)
from orchestrator.metrics import Metrics
from orchestrator.scheduling.batch_runner import Outcome
from orchestrator.scheduling.interfaces import IsCancelled, OnStatus
from orchestrator.scheduling.lanes import SlotKey
from orchestrator.scheduling.registry import Registry
from orchestrator.scheduling.scheduler import (
    PREFETCH_LEAD_SECONDS,
    Scheduler,
    near_its_end,
    poll_within,
)
from orchestrator.store.db import Job, QueuedBatch, Store
from tests.orch_helpers import fast_settings

SHA = "ab" * 32
A, B = "http://a:8100", "http://b:8100"
NODE_TIMEOUT = 6.0

Script = Callable[[str, Job, QueuedBatch], Awaitable[Outcome]]


class FakeNodes:
    """The node calls the scheduler makes itself."""

    def __init__(self) -> None:
        self.deleted: list[tuple[str, str]] = []

    async def info(self, node: str) -> dict[str, Any]:
        return {"slots": 1}

    async def delete(self, node: str, job_id: str) -> None:
        self.deleted.append((node, job_id))


class FakeRunner:
    """Plays each batch by `script` (by default: every frame rendered and collected)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.script: Script = self.render_all
        self.ran: list[tuple[str, list[int]]] = []
        self.is_cancelled: IsCancelled = lambda job_id: False
        self.on_status: OnStatus | None = None

    def bind(self, is_cancelled: IsCancelled, on_status: OnStatus) -> FakeRunner:
        self.is_cancelled, self.on_status = is_cancelled, on_status
        return self

    async def run(self, url: str, job: Job, batch: QueuedBatch) -> Outcome:
        self.ran.append((url, list(batch.frames)))
        return await self.script(url, job, batch)

    def feed_started(self, batch_id: str) -> None:
        pass

    def feed_done(self, batch_id: str) -> None:
        pass

    def forget_job(self, job_id: str) -> None:
        pass

    async def render_all(self, url: str, job: Job, batch: QueuedBatch) -> Outcome:
        pairs = [(f, 1.0) for f in batch.frames]
        collected = await self.store.run(self.store.collect_frames, job.id, batch.id, pairs)
        return Outcome(BatchState.DONE, True, collected=set(collected))


async def fail_frames(url: str, job: Job, batch: QueuedBatch) -> Outcome:
    return Outcome(BatchState.FAILED, True, errors={f: "Error: boom" for f in batch.frames})


async def refuse_scene(url: str, job: Job, batch: QueuedBatch) -> Outcome:
    errors = {f: "Freestyle is off on this node" for f in batch.frames}
    return Outcome(BatchState.FAILED, True, errors=errors, refused="Freestyle is off")


async def stop_answering(url: str, job: Job, batch: QueuedBatch) -> Outcome:
    return Outcome(BatchState.LOST, False)


class Farm:
    """A scheduler whose workers are driven by hand: `take` asks for a slot's next batch,
    `run_next` also renders it through the fake runner and settles it."""

    def __init__(self, tmp_path: Path, store: Store) -> None:
        self.now = 1000.0
        self.store = store
        self.registry = Registry(NODE_TIMEOUT, clock=lambda: self.now)
        self.runner = FakeRunner(store)
        self.nodes = FakeNodes()
        self.scheduler = Scheduler(
            fast_settings(tmp_path, []),
            store,
            self.registry,
            self.nodes,
            Metrics(),
            clock=lambda: self.now,
            runner=self.runner.bind,
        )

    def node(self, url: str, blender: str | None = None, **facts: Any) -> None:
        """The node answers (a heartbeat)."""
        self.registry.update(url, {"slots": 1, "blender_version": blender, **facts})

    async def job(
        self,
        frames: list[int],
        *,
        priority: int = 0,
        blender: str | None = None,
        device: str | None = None,
        adaptive: bool = False,
        saved_by: str | None = None,
    ) -> Job:
        job, batches = self.store.create_job(
            scene="demo.blend", scene_sha=SHA, frames_spec="x", frames=frames, fmt="PNG",
            priority=priority, batch_size=1, video=False, now=self.now,
            blender_version=blender, device=device, adaptive=adaptive, saved_by=saved_by,
        )  # fmt: skip
        await self.scheduler.enqueue(job, batches)
        return job

    def take(self, url: str) -> list[int] | None:
        cut = self.scheduler._take(SlotKey(url, 0), ahead=False)
        return None if cut is None else cut.batch.frames

    async def run_next(self, url: str) -> list[int] | None:
        """The slot's next batch, rendered by the runner's script and settled."""
        slot = SlotKey(url, 0)
        cut = self.scheduler._take(slot, ahead=False)
        if cut is None:
            return None
        await self.scheduler._run_safely(slot, cut)
        return cut.batch.frames

    def state(self, job: Job) -> str:
        stored = self.store.get_job(job.id)
        assert stored is not None
        return stored.state


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "db.sqlite3")
    yield store
    store.close()


def farm_test(body: Callable[[Farm], Awaitable[None]]) -> Callable[[Path, Store], None]:
    """Run `body(farm)` on a fresh event loop (the scheduler makes its events on the loop)."""

    def test(tmp_path: Path, store: Store) -> None:
        async def main() -> None:
            await body(Farm(tmp_path, store))

        asyncio.run(main())

    test.__name__ = body.__name__
    return test


# -- which batch a slot takes ---------------------------------------------------------------


@farm_test
async def test_take_picks_by_priority_then_submission_order(farm: Farm) -> None:
    farm.node(A)
    await farm.job([1], priority=0)
    await farm.job([2], priority=5)
    await farm.job([3], priority=5)
    await farm.job([4], priority=9)
    assert [farm.take(A) for _ in range(5)] == [[4], [2], [3], [1], None]


@farm_test
async def test_a_node_not_running_the_pinned_blender_gets_nothing_of_the_job(farm: Farm) -> None:
    farm.node(A, blender="3.6.5")
    farm.node(B, blender="4.2.1")
    await farm.job([1, 2], blender="4.2")
    assert farm.take(A) is None
    assert farm.take(B) == [1]


@farm_test
async def test_a_job_asking_for_a_gpu_goes_to_gpu_nodes_only(farm: Farm) -> None:
    farm.node(A, device="cpu")
    farm.node(B, device="gpu")
    await farm.job([1, 2], device="gpu")
    await farm.job([3, 4], device="cpu")
    assert farm.take(A) == [3]
    assert farm.take(B) == [1]


@farm_test
async def test_a_scene_saved_by_a_newer_blender_goes_to_nodes_that_open_it(farm: Farm) -> None:
    farm.node(A, blender="3.4.1")
    farm.node(B, blender="5.0.1")
    await farm.job([1, 2], saved_by="5.0")
    await farm.job([3], saved_by="3.4")
    assert farm.take(A) == [3]
    assert farm.take(A) is None
    assert farm.take(B) == [1]


@farm_test
async def test_a_warm_slot_takes_its_jobs_next_batch_first(farm: Farm) -> None:
    farm.node(A, engine="bpy")
    farm.node(B)  # a binary node: nothing stays loaded there
    older = await farm.job([1, 2])
    newer = await farm.job([3, 4])
    assert farm.take(B) == [1]
    assert farm.scheduler._warm == {}
    farm.scheduler._warm[SlotKey(A, 0)] = newer.id  # A rendered a batch of the newer job
    # A holds its scene loaded: it goes on with it before the older job, and pays no start-up.
    assert farm.take(A) == [3]
    assert farm.scheduler._warm == {SlotKey(A, 0): newer.id}
    overhead = farm.scheduler._overhead
    assert overhead(SlotKey(A, 0), newer.id) < overhead(SlotKey(A, 0), older.id)
    assert farm.take(A) == [4]
    assert farm.take(A) == [2]
    assert farm.scheduler._warm == {SlotKey(A, 0): older.id}


@farm_test
async def test_a_node_of_unknown_blender_gets_nothing_of_a_pinned_job(farm: Farm) -> None:
    farm.node(A)
    await farm.job([1], blender="4.2")
    assert farm.take(A) is None


@farm_test
async def test_a_node_that_failed_max_attempts_batches_gets_no_more_of_the_job(
    farm: Farm,
) -> None:
    farm.node(A)
    farm.node(B)
    job = await farm.job([1, 2, 3, 4, 5, 6])
    farm.runner.script = fail_frames
    for _ in range(3):
        assert await farm.run_next(A) is not None
    # Frames 1-3 wait for a node that did not fail them; 4-6 are fresh, but A is banned now.
    assert farm.take(A) is None
    assert farm.take(B) in ([1], [2], [3])  # a failed frame first: they are requeued in front
    assert farm.state(job) == JobState.RUNNING


@farm_test
async def test_a_banned_node_takes_the_job_again_when_every_live_node_is_banned(
    farm: Farm,
) -> None:
    farm.node(A)
    farm.node(B)
    await farm.job([1, 2, 3, 4, 5, 6])
    farm.runner.script = fail_frames
    for _ in range(3):
        await farm.run_next(A)
    assert farm.take(A) is None
    farm.now += NODE_TIMEOUT + 1  # B goes silent: A is the only live node left
    farm.node(A)
    assert farm.take(A) in ([1], [2], [3])


@farm_test
async def test_a_node_that_refused_the_scene_gets_no_more_of_the_job(farm: Farm) -> None:
    farm.node(A)
    farm.node(B)
    job = await farm.job([1, 2, 3])
    farm.runner.script = refuse_scene
    assert await farm.run_next(A) == [1]
    assert farm.take(A) is None
    assert farm.state(job) == JobState.RUNNING
    farm.runner.script = farm.runner.render_all
    assert await farm.run_next(B) == [1]  # retried among the nodes that did not refuse


@farm_test
async def test_when_every_live_node_refused_the_scene_the_job_fails_at_once(farm: Farm) -> None:
    farm.node(A)
    farm.node(B)
    job = await farm.job([1, 2, 3, 4])
    farm.runner.script = refuse_scene
    await farm.run_next(A)
    await farm.run_next(B)
    assert farm.state(job) == JobState.FAILED
    stored = farm.store.get_job(job.id)
    assert stored is not None and stored.failed == 4
    assert farm.scheduler.queued_batches() == 0
    assert len(farm.runner.ran) == 2  # no node tried the other frames


@farm_test
async def test_a_silent_node_gets_no_batch_until_it_answers_again(farm: Farm) -> None:
    farm.node(A)
    await farm.job([1, 2])
    farm.runner.script = stop_answering
    assert await farm.run_next(A) == [1]
    assert farm.take(A) is None  # frame 1 is back in the queue, but not for A yet
    farm.now += 1
    assert farm.take(A) is None  # still not answered (and not lost either)
    farm.node(A)
    assert farm.take(A) == [1]


# -- what a poll teaches ----------------------------------------------------------------------


def detail(state: JobState, frames: dict[int, tuple[FrameState, float | None]]) -> JobDetail:
    infos = [FrameStatus(frame=f, state=s, seconds=t) for f, (s, t) in frames.items()]
    counts = {s: sum(1 for i in infos if i.state == s) for s in FrameState}
    return JobDetail(
        id="nodejob1", state=state, scene=f"sha256:{SHA}", format="PNG",
        counts=FrameCounts(total=len(infos), **counts), progress=0.0, created=0.0,
        frames=infos, version="v1", startup_seconds=0.4,
    )  # fmt: skip


@farm_test
async def test_on_status_learns_from_each_done_frame_once_and_sees_the_batch_end(
    farm: Farm,
) -> None:
    farm.node(A)
    await farm.job([1, 2, 3, 4])
    slot = SlotKey(A, 0)
    cut = farm.scheduler._take(slot, ahead=False)
    assert cut is not None
    batch = cut.batch
    near_end = asyncio.Event()
    farm.scheduler._near_end[batch.id] = near_end  # as the worker does for each batch it runs
    speeds = farm.scheduler.speeds
    done, rendering, pending = FrameState.DONE, FrameState.RENDERING, FrameState.PENDING
    one_done = detail(
        JobState.RUNNING, {1: (done, 0.5), 2: (rendering, None), 3: (pending, None),
                           4: (pending, None)}
    )  # fmt: skip
    assert farm.scheduler._on_status(A, batch, one_done) == 3 * 0.5 - PREFETCH_LEAD_SECONDS
    assert speeds.seconds_per_frame(A, SHA) == 0.5
    assert speeds.startup[A] == 0.4
    changes = speeds.changes
    farm.scheduler._on_status(A, batch, one_done)  # the same report again: nothing new
    assert speeds.changes == changes
    assert not near_end.is_set()
    two_done = detail(
        JobState.RUNNING, {1: (done, 0.5), 2: (done, 0.5), 3: (rendering, None),
                           4: (pending, None)}
    )  # fmt: skip
    assert farm.scheduler._on_status(A, batch, two_done) is None
    assert speeds.changes == changes + 1  # frame 2 only
    assert near_end.is_set()  # 2 frames of 0.5 s left: the slot's next batch goes now


@farm_test
async def test_on_status_polls_at_once_while_the_speed_is_unknown(farm: Farm) -> None:
    farm.node(A)
    await farm.job([1, 2])
    cut = farm.scheduler._take(SlotKey(A, 0), ahead=False)
    assert cut is not None
    status = detail(JobState.RUNNING, {1: (FrameState.RENDERING, None)})
    assert farm.scheduler._on_status(A, cut.batch, status) == 0.0


@pytest.mark.parametrize(
    ("state", "left", "spf", "near"),
    [
        (JobState.RUNNING, 3, 0.5, False),
        (JobState.RUNNING, 2, 0.5, True),  # exactly the lead
        (JobState.RUNNING, 0, None, False),  # speed unknown: no idea when it ends
        (JobState.QUEUED, 0, 0.1, False),
        (JobState.COMPLETED, 5, None, True),
        (JobState.FAILED, 5, 1.0, True),
        (JobState.CANCELLED, 5, 1.0, True),
    ],
)
def test_near_its_end(state: JobState, left: int, spf: float | None, near: bool) -> None:
    assert near_its_end(state, left, spf) is near


@pytest.mark.parametrize(
    ("state", "left", "spf", "waiting", "within"),
    [
        (JobState.RUNNING, 3, None, True, 0.0),  # learn the speed from the first frame
        (JobState.QUEUED, 3, 2.0, False, 0.0),  # behind the slot's current batch
        (JobState.RUNNING, 3, 2.0, True, 3 * 2.0 - PREFETCH_LEAD_SECONDS),
        (JobState.RUNNING, 3, 2.0, False, None),  # next batch already on its way
        (JobState.COMPLETED, 0, 2.0, True, None),
    ],
)
def test_poll_within(
    state: JobState, left: int, spf: float | None, waiting: bool, within: float | None
) -> None:
    assert poll_within(state, left, spf, waiting_for_end=waiting) == within


# -- what the scheduler keeps of a job --------------------------------------------------------


@farm_test
async def test_a_finished_job_is_forgotten_once_its_last_batch_settled(farm: Farm) -> None:
    farm.node(A)
    farm.node(B)
    job = await farm.job([1, 2, 3])
    farm.runner.script = fail_frames  # leaves a failure count behind
    await farm.run_next(A)
    farm.runner.script = farm.runner.render_all
    while await farm.run_next(B):
        pass
    assert farm.state(job) == JobState.COMPLETED
    assert farm.scheduler.tracked_jobs() == set()
    assert farm.scheduler.lanes.batches == {}  # nor the slots that rendered it


@farm_test
async def test_a_job_failed_by_refusals_is_forgotten(farm: Farm) -> None:
    farm.node(A)
    job = await farm.job([1, 2])
    farm.runner.script = refuse_scene
    await farm.run_next(A)
    assert farm.state(job) == JobState.FAILED
    assert farm.scheduler.tracked_jobs() == set()


@farm_test
async def test_a_job_that_ended_stays_known_until_its_last_batch_settled(farm: Farm) -> None:
    farm.node(A)
    farm.node(B)
    job = await farm.job([1, 2, 3])
    farm.runner.script = fail_frames
    await farm.run_next(B)  # frame 1 failed once on B: a failure count is kept for the job
    collected, release = asyncio.Event(), asyncio.Event()

    async def collect_then_wait(url: str, job: Job, batch: QueuedBatch) -> Outcome:
        outcome = await farm.runner.render_all(url, job, batch)
        collected.set()
        await release.wait()  # Blender still quitting: the batch has not settled yet
        return outcome

    farm.runner.script = collect_then_wait
    slot = SlotKey(A, 0)
    cut = farm.scheduler._take(slot, ahead=False)
    assert cut is not None and cut.batch.frames == [1]
    on_a = asyncio.create_task(farm.scheduler._run_safely(slot, cut))
    await collected.wait()
    farm.runner.script = farm.runner.render_all
    assert await farm.run_next(B) == [2]
    assert await farm.run_next(B) == [3]
    assert farm.state(job) == JobState.COMPLETED
    # A's batch still reports to the scheduler, which still knows its job: it learns from it.
    late_poll = detail(JobState.RUNNING, {1: (FrameState.DONE, 0.5)})
    farm.scheduler._on_status(A, cut.batch, late_poll)
    assert farm.scheduler.speeds.seconds_per_frame(A, SHA) == 0.5
    release.set()
    await on_a
    assert farm.scheduler.tracked_jobs() == set()


@farm_test
async def test_a_cancelled_job_is_forgotten_after_its_running_batch_saw_the_cancel(
    farm: Farm,
) -> None:
    farm.node(A)
    job = await farm.job([1, 2])
    started, release = asyncio.Event(), asyncio.Event()
    seen: list[bool] = []

    async def wait_for_cancel(url: str, job: Job, batch: QueuedBatch) -> Outcome:
        started.set()
        await release.wait()
        seen.append(farm.runner.is_cancelled(job.id))
        return Outcome(BatchState.CANCELLED, True)

    farm.runner.script = wait_for_cancel
    slot = SlotKey(A, 0)
    cut = farm.scheduler._take(slot, ahead=False)
    assert cut is not None
    running = asyncio.create_task(farm.scheduler._run_safely(slot, cut))
    await started.wait()
    assert await farm.scheduler.cancel(job.id)
    assert job.id in farm.scheduler.tracked_jobs()  # its batch has not seen the cancel yet
    release.set()
    await running
    assert seen == [True]
    assert farm.scheduler.tracked_jobs() == set()


@farm_test
async def test_a_cancelled_job_with_nothing_running_is_forgotten_at_once(farm: Farm) -> None:
    farm.node(A)
    job = await farm.job([1, 2])
    assert await farm.scheduler.cancel(job.id)
    assert farm.scheduler.tracked_jobs() == set()
    assert farm.take(A) is None


# -- restart and the store ------------------------------------------------------------------


@farm_test
async def test_frames_on_disk_are_read_by_their_file_names(farm: Farm) -> None:
    job = await farm.job([3, 4, 12])
    folder = farm.scheduler.settings.renders_dir / job.id
    folder.mkdir(parents=True)
    for name in ("frame_00003.png", "frame_00012.exr", ".frame_00004.png.b1.part",
                 "frame_x.png", "preview.mp4", "frame_00004.png.tmp"):  # fmt: skip
        (folder / name).write_bytes(b"x")
    assert farm.scheduler._on_disk(job.id, 1) == {3, 12}


@farm_test
async def test_speeds_are_saved_again_once_ten_seconds_passed_on_the_clock(farm: Farm) -> None:
    scheduler = farm.scheduler
    scheduler.speeds.observe_frame(A, SHA, 2.0)
    await scheduler._save_speeds()
    scheduler.speeds.observe_frame(B, SHA, 4.0)
    farm.now += 9.0
    await scheduler._save_speeds()
    assert len(farm.store.load_learned("speeds")["frame"]) == 1
    farm.now += 1.0
    await scheduler._save_speeds()
    assert len(farm.store.load_learned("speeds")["frame"]) == 2
