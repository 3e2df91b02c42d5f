"""Whatever goes wrong in a batch's run ends that batch on that node, never the scheduling: the
batch runner on a fake node client and a fake clock, the scheduler on a runner that breaks.

No sleeps are timed: the stall deadline is passed by moving the registry's clock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from farm_common.protocol import (
    MAX_MESSAGE_CHARS,
    BatchState,
    FrameCounts,
    FrameState,
    FrameStatus,
    JobCreated,
    JobDetail,
    JobState,
)
from orchestrator.metrics import Metrics
from orchestrator.nodes.archive import FrameFiles
from orchestrator.scheduling.batch_runner import BatchRunner, Outcome
from orchestrator.scheduling.interfaces import IsCancelled, OnStatus
from orchestrator.scheduling.lanes import SlotKey
from orchestrator.scheduling.registry import Registry
from orchestrator.scheduling.scheduler import Scheduler
from orchestrator.store.db import Job, QueuedBatch, Store
from tests.orch_helpers import fast_settings

SHA = "cd" * 32
NODE = "http://n:8100"
STALL = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class StuckNode:
    """A node that takes the batch and then, poll after poll, says its first frame renders;
    each poll moves the clock on by `step` seconds. `broken`: polls raise it instead."""

    def __init__(self, clock: Clock, step: float, broken: BaseException | None = None) -> None:
        self.clock, self.step, self.broken = clock, step, broken
        self.polls = 0
        self.deleted: list[str] = []

    async def has_scene(self, node: str, sha: str) -> bool:
        return True

    async def submit(
        self, node: str, scene: str, frames: str, fmt: str | None, **_: object
    ) -> JobCreated:
        return JobCreated(id="nj1", state=JobState.QUEUED, status_url="/jobs/nj1", version="v0")

    async def status(self, node: str, job_id: str, **kw: Any) -> JobDetail:
        self.polls += 1
        if self.broken is not None:
            raise self.broken
        self.clock.now += self.step
        frames = [FrameStatus(frame=f, state=FrameState.RENDERING) for f in (1, 2)]
        return JobDetail(
            id=job_id, state=JobState.RUNNING, scene=f"sha256:{SHA}", format="PNG",
            counts=FrameCounts(total=2, pending=0, rendering=2, done=0, failed=0),
            progress=0.0, created=0.0, frames=frames, version=f"v{self.polls}",
        )  # fmt: skip

    async def download_archive(
        self, node: str, job_id: str, frames: Any, files: FrameFiles
    ) -> None:
        raise AssertionError("no frame was said done")

    async def delete(self, node: str, job_id: str) -> None:
        self.deleted.append(job_id)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "db.sqlite3")
    yield store
    store.close()


def one_batch(store: Store, now: float) -> tuple[Job, QueuedBatch]:
    job, batches = store.create_job(
        scene="demo.blend", scene_sha=SHA, frames_spec="1-2", frames=[1, 2], fmt="PNG",
        priority=0, batch_size=2, video=False, now=now,
    )  # fmt: skip
    (batch,) = batches
    assert store.dispatch_batch(batch, NODE, now)
    return job, batch


def run_batch(tmp_path: Path, store: Store, node: StuckNode, clock: Clock) -> Outcome:
    registry = Registry(6.0, clock=clock)
    registry.update(NODE, {"slots": 1})
    settings = fast_settings(tmp_path, [], batch_stall_seconds=STALL)
    job, batch = one_batch(store, clock.now)

    async def main() -> Outcome:
        runner = BatchRunner(
            settings, store, registry, node, Metrics(),  # type: ignore[arg-type]
            lambda job_id: False,
        )  # fmt: skip
        return await asyncio.wait_for(runner.run(NODE, job, batch), timeout=20)

    return asyncio.run(main())


def test_a_batch_in_which_no_frame_ends_for_the_stall_time_is_taken_back(
    tmp_path: Path, store: Store
) -> None:
    clock = Clock()
    node = StuckNode(clock, step=STALL / 4)
    outcome = run_batch(tmp_path, store, node, clock)
    assert outcome.state == BatchState.FAILED
    assert outcome.answered  # it answered; it only never finished a frame
    assert set(outcome.errors) == {1, 2}
    assert "--batch-stall-seconds" in outcome.errors[1]
    assert outcome.node_job == "nj1"  # the scheduler deletes it on the node
    assert 4 <= node.polls <= 6  # not at the first slow poll, not long after the deadline


def test_a_slow_batch_that_still_ends_frames_is_left_to_render(
    tmp_path: Path, store: Store
) -> None:
    # Polls 0.9 stall times apart: frame 1 ends at the second, so the third (2.7 stall times
    # after the submit, 0.9 after that end) is no stall; the fourth breaks to end the test.
    clock = Clock()

    class SlowButAlive(StuckNode):
        async def status(self, node: str, job_id: str, **kw: Any) -> JobDetail:
            if self.polls >= 3:
                self.broken = RuntimeError("enough")
            detail = await super().status(node, job_id, **kw)
            if self.polls >= 2:
                detail.frames[0] = FrameStatus(
                    frame=1, state=FrameState.FAILED, seconds=1.0, error="Error: bad"
                )
            return detail

    node = SlowButAlive(clock, step=STALL * 0.9)
    outcome = run_batch(tmp_path, store, node, clock)
    assert node.polls == 4  # no stall at the third poll: frame 1 had ended at the second
    assert "enough" in outcome.errors[2] and "--batch-stall-seconds" not in outcome.errors[2]


def test_an_unexpected_error_ends_the_batch_on_its_node_with_a_cut_message(
    tmp_path: Path, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    node = StuckNode(clock, step=1.0, broken=ValueError("bad " * 10_000))
    with caplog.at_level(logging.ERROR):
        outcome = run_batch(tmp_path, store, node, clock)
    assert outcome.state == BatchState.FAILED
    assert not outcome.answered  # the node gets nothing more until it answers again
    assert set(outcome.errors) == {1, 2}
    assert all(len(why) <= MAX_MESSAGE_CHARS for why in outcome.errors.values())
    assert outcome.node_job == "nj1"
    assert any(r.exc_info for r in caplog.records), "logged with its traceback"


# -- the scheduler ----------------------------------------------------------------------------


class BreakingRunner:
    def __init__(self) -> None:
        self.runs = 0

    def bind(self, is_cancelled: IsCancelled, on_status: OnStatus) -> BreakingRunner:
        return self

    async def run(self, url: str, job: Job, batch: QueuedBatch) -> Outcome:
        self.runs += 1
        raise RuntimeError("a bug")

    def feed_started(self, batch_id: str) -> None:
        pass

    def feed_done(self, batch_id: str) -> None:
        pass

    def forget_job(self, job_id: str) -> None:
        pass


class NoCalls:
    async def info(self, node: str) -> dict[str, Any]:
        raise AssertionError("not called")

    async def delete(self, node: str, job_id: str) -> None:
        pass


def scheduler_on(tmp_path: Path, store: Store, clock: Clock) -> tuple[Scheduler, Registry]:
    registry = Registry(6.0, clock=clock)
    scheduler = Scheduler(
        fast_settings(tmp_path, []), store, registry, NoCalls(), Metrics(),  # type: ignore[arg-type]
        clock=clock, runner=BreakingRunner().bind,
    )  # fmt: skip
    return scheduler, registry


def test_a_batch_whose_run_breaks_goes_back_and_its_node_waits(
    tmp_path: Path, store: Store
) -> None:
    clock = Clock()

    async def main() -> None:
        scheduler, registry = scheduler_on(tmp_path, store, clock)
        registry.update(NODE, {"slots": 1})
        job, batches = store.create_job(
            scene="demo.blend", scene_sha=SHA, frames_spec="1-2", frames=[1, 2], fmt="PNG",
            priority=0, batch_size=2, video=False, now=clock.now,
        )  # fmt: skip
        await scheduler.enqueue(job, batches)
        slot = SlotKey(NODE, 0)
        cut = scheduler._take(slot, ahead=False)
        assert cut is not None
        assert await scheduler._run_safely(slot, cut) is False  # the worker waits for an answer
        assert scheduler.queued_batches() == 1  # its frames are back in the queue
        assert scheduler._take(slot, ahead=False) is None  # not for this node, until it answers
        clock.now += 1
        registry.update(NODE, {"slots": 1})
        again = scheduler._take(slot, ahead=False)
        assert again is not None and again.batch.frames == [1, 2]
        stored = store.get_job(job.id)
        assert stored is not None and stored.state in (JobState.QUEUED, JobState.RUNNING)

    asyncio.run(main())


def test_the_monitor_goes_on_after_a_round_that_fails(tmp_path: Path, store: Store) -> None:
    clock = Clock()

    async def main() -> None:
        scheduler, _ = scheduler_on(tmp_path, store, clock)
        rounds = 0
        second = asyncio.Event()

        async def flaky(lost_before: set[str]) -> set[str]:
            nonlocal rounds
            rounds += 1
            if rounds == 1:
                raise RuntimeError("a bug in one round")
            second.set()
            return set()

        scheduler._monitor_round = flaky  # type: ignore[method-assign]
        monitor = asyncio.create_task(scheduler._monitor_loop())
        try:
            await asyncio.wait_for(second.wait(), timeout=10)
        finally:
            monitor.cancel()
        assert rounds >= 2

    asyncio.run(main())
