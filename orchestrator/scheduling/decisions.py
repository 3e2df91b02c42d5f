"""What the batch runner decides on each poll of a batch's node job, as pure code: which frames
to collect, which failed (and whether that counts), how a collection settles, when the batch is
over and how, and how to ask next. The runner (batch_runner.py) does the I/O around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from farm_common.protocol import (
    FINAL_JOB_STATES,
    BatchState,
    FrameState,
    JobDetail,
    JobState,
)
from orchestrator.scheduling.policy import failure_counts, frame_started, poll_backoff

# Status polls that may go unanswered in a row before the batch's node counts as not answering:
# one dropped connection or a slow answer under load is not worth requeueing a batch for, while
# three in a row (seconds apart) are what a node going away looks like.
MAX_STATUS_MISSES = 3
# How often a frame the node reports done may go unserved after its node job ended before it
# counts as failed on that node: the file can lag its status a moment (a slow disk, a rename),
# but a node job that is over will not bring it any more.
UNSERVED_TRIES = 3


@dataclass
class BatchBook:
    """What the runner knows of one batch on one node, across its polls: the only state they
    share. A frame is settled once collected, failed here (counted) or spared (failed by no
    fault of its own: it goes back to the queue uncounted)."""

    frames: frozenset[int]
    collected: set[int] = field(default_factory=set)
    errors: dict[int, str] = field(default_factory=dict)  # failed on this node: counted
    spared: set[int] = field(default_factory=set)
    unserved: dict[int, int] = field(default_factory=dict)  # done frame -> tries after the end
    refused: str | None = None  # the node renders none of the scene (render_node Job.refused)
    node_job: str | None = None  # the batch's job id on the node, once it took the batch

    @classmethod
    def of(cls, frames: Iterable[int]) -> BatchBook:
        return cls(frozenset(frames))

    def settled(self, frame: int) -> bool:
        return frame in self.collected or frame in self.errors or frame in self.spared

    def progress(self) -> int:
        """Grows whenever a frame is collected or fails: the poll interval backs off without."""
        return len(self.collected) + len(self.errors)

    def fail_uncollected(self, why: str) -> None:
        """The node refused the batch outright: every frame not collected failed on it."""
        self.errors.update({f: why for f in self.frames if f not in self.collected})


@dataclass(frozen=True)
class PollReading:
    """What one status answer says of the batch's frames not settled yet."""

    ready: dict[int, float | None]  # done: frame -> render seconds, to collect
    failed: dict[int, str]  # failed, counted against the frame on this node
    spared: frozenset[int]  # failed because Blender died on an earlier frame


def read_poll(status: JobDetail, book: BatchBook) -> PollReading:
    """Sort the frames of a status answer the book has not settled yet."""
    started_any = any(frame_started(info) for info in status.frames)
    ready: dict[int, float | None] = {}
    failed: dict[int, str] = {}
    spared: set[int] = set()
    for info in status.frames:
        frame = info.frame
        if frame not in book.frames or book.settled(frame):
            continue
        if info.state == FrameState.DONE:
            ready[frame] = info.seconds
        elif info.state == FrameState.FAILED:
            if failure_counts(info, started_any):
                failed[frame] = info.error or status.error or "failed"
            else:
                spared.add(frame)
    return PollReading(ready, failed, frozenset(spared))


def take_poll(book: BatchBook, reading: PollReading) -> None:
    """Record a poll's failed and spared frames in the book."""
    book.errors.update(reading.failed)
    book.spared.update(reading.spared)


@dataclass
class Fetched:
    """What one collection of a poll's done frames came to."""

    placed: list[int] = field(default_factory=list)  # in place (and recorded if still ours)
    failed: dict[int, str] = field(default_factory=dict)  # came broken: failed on this node
    missing: dict[int, str] = field(default_factory=dict)  # not served (yet): asked again


def take_collection(book: BatchBook, fetched: Fetched, final: bool) -> bool:
    """Record a collection in the book; True while a done frame the node did not serve is to
    be asked for again (the batch is not over until it is collected or given up)."""
    book.collected.update(fetched.placed)
    book.errors.update(fetched.failed)
    waiting = False
    for frame, why in fetched.missing.items():
        # Only tries after the node job ended count: before, the file may simply lag.
        tries = book.unserved.get(frame, 0) + int(final)
        book.unserved[frame] = tries
        if tries >= UNSERVED_TRIES:
            book.errors[frame] = why
        else:
            waiting = True
    return waiting


@dataclass(frozen=True)
class BatchEnd:
    """How a batch's run on its node ends, and the frames that ending fails."""

    state: BatchState
    failed: Mapping[int, str] = field(default_factory=dict)  # unaccounted for at the end
    refused: str | None = None


def batch_end(status: JobDetail, book: BatchBook, waiting: bool) -> BatchEnd | None:
    """The batch's end once this poll is taken in (and its frames collected); None while it
    goes on."""
    final = status.state in FINAL_JOB_STATES
    if not final:
        if book.collected >= book.frames:
            # Every frame is collected: the batch is done. Blender may still be quitting
            # (freeing the scene: then one more poll to see it); the node job is deleted right
            # after the batch settles, so the node's slot is free at once.
            return BatchEnd(BatchState.DONE)
        return None
    if waiting:
        return None
    refused = status.refused or None
    if status.state == JobState.CANCELLED:
        # Cancelled under us (the node shutting down): not the frames' fault.
        return BatchEnd(BatchState.LOST, refused=refused)
    why = status.error or f"node job {status.state}"
    unaccounted = {f: why for f in sorted(book.frames) if not book.settled(f)}
    over = BatchState.FAILED if book.errors or unaccounted or book.spared else BatchState.DONE
    return BatchEnd(over, unaccounted, refused)


def take_end(book: BatchBook, end: BatchEnd) -> BatchState:
    """Record the end in the book; the batch's end state."""
    book.errors.update(end.failed)
    if end.refused:
        book.refused = end.refused
    return end.state


def held_since(status: JobDetail, waiting: bool) -> str | None:
    """The version the next poll waits on the node from (None: poll after an interval).

    The last frame of a batch (and the start of one queued behind another) is waited for on
    the node, so the batch ends the moment its frame is saved; the others are polled: a held
    request per frame would multiply the traffic for fast frames. A frame not served yet is
    asked for again after an interval, not when the job changes next.
    """
    if waiting:
        return None
    left = sum(1 for f in status.frames if f.state in (FrameState.PENDING, FrameState.RENDERING))
    if left <= 1 or status.state == JobState.QUEUED:
        return status.version
    return None


def next_interval(
    interval: float, progressed: bool, base: float, wanted: float | None, floor: float
) -> float:
    """The next poll interval: fast while frames come in, backing off while a long frame
    renders (200 slots polling every 0.3 s would be most of the farm's HTTP traffic, for
    nothing); never later than the scheduler `wanted`, never sooner than `floor`."""
    interval = poll_backoff(interval, progressed, base)
    if wanted is not None:
        interval = min(interval, max(wanted, floor))
    return interval
