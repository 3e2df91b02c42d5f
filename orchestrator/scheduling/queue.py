"""One job's queue of batches, and cutting a batch to size from it. In memory, no I/O."""

from __future__ import annotations

from collections import deque
from typing import NamedTuple

from farm_common.tiles import unit_tile
from orchestrator.store.db import QueuedBatch, new_id


class Cut(NamedTuple):
    """A batch as taken from the queue: sent as `batch`; the queued batches it `absorbed` and
    the queued `remainder` cut off it are recorded in the same transaction as its dispatch."""

    batch: QueuedBatch
    absorbed: list[str]
    remainder: QueuedBatch | None


class JobQueue:
    """One job's queued batches, in order, with the number of frames they hold."""

    def __init__(self) -> None:
        self.batches: deque[QueuedBatch] = deque()
        self.frames = 0

    def __len__(self) -> int:
        return len(self.batches)

    def add(self, batches: list[QueuedBatch], *, front: bool = False) -> None:
        if front:
            self.batches.extendleft(reversed(batches))
        else:
            self.batches.extend(batches)
        self.frames += sum(len(b.frames) for b in batches)

    def take(self, head: QueuedBatch, size: int) -> Cut:
        """Cut `size` frames starting at `head` (0: `head` as it is). Only batches never tried
        are joined, and only those of `head`'s region (a node renders one region a batch)."""
        at = self.batches.index(head)
        del self.batches[at]
        taken = QueuedBatch(head.id, head.job, list(head.frames), head.avoid, head.attempts)
        absorbed: list[str] = []
        fresh = not head.avoid and not head.attempts
        tile = unit_tile(head.frames[0])
        while fresh and len(taken.frames) < size and at < len(self.batches):
            after = self.batches[at]
            if after.avoid or after.attempts or unit_tile(after.frames[0]) != tile:
                break
            del self.batches[at]
            absorbed.append(after.id)
            taken.frames += after.frames
        remainder = None
        if 0 < size < len(taken.frames):
            rest = taken.frames[size:]
            taken.frames = taken.frames[:size]
            remainder = QueuedBatch(new_id(), head.job, rest, head.avoid, head.attempts)
            self.batches.insert(at, remainder)
        self.frames -= len(taken.frames)
        return Cut(taken, absorbed, remainder)
