"""The batch runner's decisions on a node's status answers (orchestrator/scheduling/decisions.py),
as tables: no node, no store, no clock."""

from __future__ import annotations

import pytest

from farm_common.protocol import (
    BatchState,
    FrameCounts,
    FrameState,
    FrameStatus,
    JobDetail,
    JobState,
)
from orchestrator.scheduling.decisions import (
    UNSERVED_TRIES,
    BatchBook,
    BatchEnd,
    Fetched,
    batch_end,
    held_since,
    next_interval,
    read_poll,
    take_collection,
    take_end,
    take_poll,
)

D, F, P, R = FrameState.DONE, FrameState.FAILED, FrameState.PENDING, FrameState.RENDERING


def frame(
    n: int, state: FrameState, seconds: float | None = None, error: str | None = None
) -> FrameStatus:
    return FrameStatus(frame=n, state=state, seconds=seconds, error=error)


def detail(
    state: JobState,
    frames: list[FrameStatus],
    *,
    error: str | None = None,
    refused: str | None = None,
    version: str = "v7",
) -> JobDetail:
    count = {s: sum(1 for f in frames if f.state == s) for s in FrameState}
    return JobDetail(
        id="job1",
        state=state,
        scene="sha256:abc",
        format="PNG",
        counts=FrameCounts(
            total=len(frames), pending=count[P], rendering=count[R], done=count[D], failed=count[F]
        ),
        progress=0.0,
        error=error,
        refused=refused,
        created=0.0,
        frames=frames,
        version=version,
    )


def book(
    frames: range | list[int],
    collected: set[int] | None = None,
    errors: dict[int, str] | None = None,
    spared: set[int] | None = None,
) -> BatchBook:
    b = BatchBook.of(frames)
    b.collected |= collected or set()
    b.errors |= errors or {}
    b.spared |= spared or set()
    return b


# --- which frames a poll makes ready, failed or spared ------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "before", "ready", "failed", "spared"),
    [
        (
            "all done: collect all, with their render seconds",
            detail(JobState.COMPLETED, [frame(1, D, 1.5), frame(2, D, 2.0), frame(3, D)]),
            book(range(1, 4)),
            {1: 1.5, 2: 2.0, 3: None},
            {},
            set(),
        ),
        (
            "frames settled before are not read again",
            detail(JobState.RUNNING, [frame(1, D, 1.0), frame(2, D, 1.0), frame(3, F, 1.0, "x")]),
            book(range(1, 5), collected={1}, errors={3: "old"}),
            {2: 1.0},
            {},
            set(),
        ),
        (
            "frames that are not the batch's are ignored",
            detail(
                JobState.RUNNING, [frame(1, D, 1.0), frame(99, D, 1.0), frame(98, F, None, "x")]
            ),
            book([1, 2]),
            {1: 1.0},
            {},
            set(),
        ),
        (
            "final failed with no frame ever started: every frame counts (a broken scene)",
            detail(
                JobState.FAILED,
                [frame(1, F, error="Cannot read file"), frame(2, F), frame(3, F)],
                error="blender exited 1",
            ),
            book(range(1, 4)),
            {},
            {1: "Cannot read file", 2: "blender exited 1", 3: "blender exited 1"},
            set(),
        ),
        (
            "crash on frame 5 of 5-8: 5 counts, 6-8 are spared",
            detail(
                JobState.FAILED,
                [
                    frame(5, F, 1.2, "crash"),
                    *(frame(n, F, error="before rendering") for n in (6, 7, 8)),
                ],
            ),
            book(range(5, 9)),
            {},
            {5: "crash"},
            {6, 7, 8},
        ),
        (
            "crash after frames done: the done ones are collected, the rest spared",
            detail(JobState.FAILED, [frame(1, D, 1.0), frame(2, R), frame(3, F), frame(4, F)]),
            book(range(1, 5)),
            {1: 1.0},
            {},
            {3, 4},
        ),
        (
            "a failed frame with no error anywhere still says it failed",
            detail(JobState.FAILED, [frame(1, F, 0.5)]),
            book([1]),
            {},
            {1: "failed"},
            set(),
        ),
        (
            "pending and rendering frames are neither ready nor failed",
            detail(JobState.RUNNING, [frame(1, P), frame(2, R)]),
            book([1, 2]),
            {},
            {},
            set(),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_poll_sorts_the_batchs_unsettled_frames(
    case: str,
    status: JobDetail,
    before: BatchBook,
    ready: dict[int, float | None],
    failed: dict[int, str],
    spared: set[int],
) -> None:
    reading = read_poll(status, before)
    assert (reading.ready, reading.failed, set(reading.spared)) == (ready, failed, spared)


def test_a_polls_failures_go_into_the_book_and_are_not_read_twice() -> None:
    status = detail(JobState.FAILED, [frame(5, F, 1.2, "crash"), frame(6, F), frame(7, D, 1.0)])
    b = book(range(5, 8))
    take_poll(b, read_poll(status, b))
    assert (b.errors, b.spared) == ({5: "crash"}, {6})
    again = read_poll(status, b)
    assert (again.ready, again.failed, again.spared) == ({7: 1.0}, {}, frozenset())


# --- how a collection settles ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "unserved_before", "final", "errors", "unserved", "waiting"),
    [
        ("not served while the job runs: asked again, uncounted", 0, False, {}, 0, True),
        (
            "a lagging file never counts before the node job ends",
            UNSERVED_TRIES - 1,
            False,
            {},
            UNSERVED_TRIES - 1,
            True,
        ),
        ("first miss after the end: asked again", 0, True, {}, 1, True),
        (
            "done but not served three times after the end: failed on this node",
            UNSERVED_TRIES - 1,
            True,
            {4: "frame done on n0 but not served"},
            UNSERVED_TRIES,
            False,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_frame_done_but_not_served_is_retried_then_failed(
    case: str,
    unserved_before: int,
    final: bool,
    errors: dict[int, str],
    unserved: int,
    waiting: bool,
) -> None:
    b = book(range(1, 5))
    b.unserved[4] = unserved_before
    fetched = Fetched(
        placed=[1, 2], failed={3: "empty file"}, missing={4: "frame done on n0 but not served"}
    )
    assert take_collection(b, fetched, final) is waiting
    assert b.collected == {1, 2}
    assert b.errors == {3: "empty file", **errors}
    assert b.unserved[4] == unserved


def test_a_frame_missing_three_polls_after_the_end_ends_the_batch_failed() -> None:
    """The whole loop on one node answer: each poll collects, each collection misses frame 2."""
    status = detail(JobState.COMPLETED, [frame(1, D, 1.0), frame(2, D, 1.0)])
    b = book([1, 2])
    ends: list[BatchEnd | None] = []
    for _ in range(UNSERVED_TRIES):
        reading = read_poll(status, b)
        placed = [f for f in reading.ready if f == 1]
        waiting = take_collection(b, Fetched(placed, {}, {2: "not served"}), final=True)
        ends.append(batch_end(status, b, waiting))
    assert ends[:-1] == [None] * (UNSERVED_TRIES - 1)
    assert ends[-1] == BatchEnd(BatchState.FAILED, {}, None)
    assert (b.collected, b.errors) == ({1}, {2: "not served"})


# --- whether the batch is over, and how --------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "before", "waiting", "end"),
    [
        (
            "running with every frame collected: done (Blender may still be quitting)",
            detail(JobState.RUNNING, [frame(1, D, 1.0), frame(2, D, 1.0)]),
            book([1, 2], collected={1, 2}),
            False,
            BatchEnd(BatchState.DONE),
        ),
        (
            "running with frames left: goes on",
            detail(JobState.RUNNING, [frame(1, D, 1.0), frame(2, R)]),
            book([1, 2], collected={1}),
            False,
            None,
        ),
        (
            "completed and all collected: done",
            detail(JobState.COMPLETED, [frame(1, D, 1.0)]),
            book([1], collected={1}),
            False,
            BatchEnd(BatchState.DONE, {}),
        ),
        (
            "completed but a frame is still to be fetched again: goes on",
            detail(JobState.COMPLETED, [frame(1, D, 1.0)]),
            book([1]),
            True,
            None,
        ),
        (
            "cancelled under us (the node shutting down): lost, not the frames' fault",
            detail(JobState.CANCELLED, [frame(1, D, 1.0), frame(2, P)]),
            book([1, 2], collected={1}),
            False,
            BatchEnd(BatchState.LOST),
        ),
        (
            "final with frames nobody accounted for: they fail with the job's error",
            detail(JobState.FAILED, [frame(1, D, 1.0), frame(2, P), frame(3, P)], error="OOM"),
            book(range(1, 4), collected={1}),
            False,
            BatchEnd(BatchState.FAILED, {2: "OOM", 3: "OOM"}),
        ),
        (
            "final without an error: the frames fail with the job's state",
            detail(JobState.COMPLETED, [frame(1, P)]),
            book([1]),
            False,
            BatchEnd(BatchState.FAILED, {1: "node job completed"}),
        ),
        (
            "only spared frames left: failed, so they go back to the queue",
            detail(JobState.FAILED, [frame(1, D, 1.0), frame(2, F)]),
            book([1, 2], collected={1}, spared={2}),
            False,
            BatchEnd(BatchState.FAILED, {}),
        ),
        (
            "the node refuses the scene: failed, with its reason",
            detail(JobState.FAILED, [frame(1, F)], refused="Freestyle: --allow-freestyle"),
            book([1], errors={1: "Freestyle"}),
            False,
            BatchEnd(BatchState.FAILED, {}, "Freestyle: --allow-freestyle"),
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_batch_ends_when_its_node_job_is_over_and_nothing_is_awaited(
    case: str, status: JobDetail, before: BatchBook, waiting: bool, end: BatchEnd | None
) -> None:
    assert batch_end(status, before, waiting) == end


def test_an_end_goes_into_the_book() -> None:
    b = book([1, 2], collected={1})
    state = take_end(b, BatchEnd(BatchState.FAILED, {2: "OOM"}, "no Freestyle"))
    assert (state, b.errors, b.refused) == (BatchState.FAILED, {2: "OOM"}, "no Freestyle")


def test_a_refused_batch_fails_every_frame_not_collected() -> None:
    b = book(range(1, 5), collected={1}, errors={2: "crash"})
    b.fail_uncollected("node refused the batch: 400 bad frames")
    assert b.errors == dict.fromkeys((2, 3, 4), "node refused the batch: 400 bad frames")


# --- how to ask next --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "status", "waiting", "since"),
    [
        (
            "the last frame left is waited for on the node",
            detail(JobState.RUNNING, [frame(1, D, 1.0), frame(2, R)], version="v3"),
            False,
            "v3",
        ),
        (
            "a batch queued behind another is waited for on the node",
            detail(JobState.QUEUED, [frame(1, P), frame(2, P)], version="v0"),
            False,
            "v0",
        ),
        (
            "several frames left: polled at intervals",
            detail(JobState.RUNNING, [frame(1, R), frame(2, P)]),
            False,
            None,
        ),
        (
            "a frame to fetch again: polled at an interval, not held",
            detail(JobState.COMPLETED, [frame(1, D, 1.0)]),
            True,
            None,
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_next_poll_is_held_near_the_end_of_a_batch(
    case: str, status: JobDetail, waiting: bool, since: str | None
) -> None:
    assert held_since(status, waiting) == since


@pytest.mark.parametrize(
    ("interval", "progressed", "wanted", "expected"),
    [
        (1.0, True, None, 0.1),  # progress: back to the base
        (0.4, False, None, 0.6),  # none: 1.5x
        (1.8, False, None, 2.0),  # capped
        (1.8, False, 0.5, 0.5),  # the scheduler wants to hear sooner
        (1.8, False, 0.01, 0.05),  # but never sooner than the floor
    ],
)
def test_the_poll_interval_backs_off_within_the_schedulers_wish(
    interval: float, progressed: bool, wanted: float | None, expected: float
) -> None:
    assert next_interval(interval, progressed, 0.1, wanted, 0.05) == pytest.approx(expected)
