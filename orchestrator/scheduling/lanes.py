"""What the scheduler knows about its render slots: measured speeds and the work handed out.

In memory, no I/O. Speeds are kept per node and scene (a node's seconds a frame depend on the
scene), and outlive a job: the next job of the same scene on the same farm starts with every
node's speed known, so even its first batches are cut to size. A scene not seen yet on a node
is estimated from the node's speed relative to the farm on the scenes both rendered. The
scheduler saves the book in the store (`dump` / `SpeedBook.load`), so they outlive a restart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from orchestrator.scheduling.sizing import Lane

# Until a node's start-up is measured: Blender loading a small scene plus the round trips.
DEFAULT_OVERHEAD = 1.0
# What a batch costs beyond Blender's own start-up: spawning it, submit and collect round trips.
ROUND_TRIPS = 0.15
SMOOTHING = 0.3  # weight of a new measurement in the running averages
SCENES_KEPT = 50  # scenes whose speeds are saved (the most recently rendered)


# Below this a node's word is noise (or a lie); 1 / seconds must stay a modest number.
MIN_FRAME_SECONDS = 1e-3
# Above this (11.6 days for one frame or one start-up) it is a lie: a finite 1e308 would
# overflow the ratios below to infinity, and then to a zero that every later division trips on.
MAX_FRAME_SECONDS = 1e6
# A node's speed relative to the farm, and a scene's cost, stay within what the bounds above
# make of a ratio, however the measurements of many nodes and scenes compound.
MAX_RATIO = MAX_FRAME_SECONDS / MIN_FRAME_SECONDS


def _blend(old: float | None, new: float) -> float:
    return new if old is None else old + SMOOTHING * (new - old)


def _ratio(value: float) -> float:
    """`value` (a relative speed or a scene's cost) kept finite, positive and bounded."""
    return min(max(value, 1 / MAX_RATIO), MAX_RATIO)


def _seconds(value: object, *, zero: bool = False) -> bool:
    """A finite number of seconds above 0 (or 0 too)."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        return False
    return value >= 0 if zero else value > 0


@dataclass
class SpeedBook:
    """Seconds a frame per (node, scene) and start-up seconds per node, as measured.

    For a scene a node has not rendered yet, its speed is estimated as its speed relative to
    the farm (`relative`, learned on every scene) times the scene's cost for a node of
    relative speed 1 (`base`, learned from whichever nodes rendered it).
    """

    frame: dict[tuple[str, str], float] = field(default_factory=dict)
    startup: dict[str, float] = field(default_factory=dict)
    relative: dict[str, float] = field(default_factory=dict)
    base: dict[str, float] = field(default_factory=dict)
    changes: int = 0  # measurements taken in: the scheduler saves the book when it moved

    def dump(self) -> dict[str, Any]:
        """The book as JSON-ready data (`SpeedBook.load` reads it back), for the SCENES_KEPT
        scenes rendered last: the saved book does not grow with every scene ever rendered."""
        kept = set(list(self.base)[-SCENES_KEPT:])  # `base` is in the order scenes were seen
        return {
            "frame": [[n, scene, s] for (n, scene), s in self.frame.items() if scene in kept],
            "startup": dict(self.startup),
            "relative": dict(self.relative),
            "base": {scene: s for scene, s in self.base.items() if scene in kept},
        }

    @classmethod
    def load(cls, data: Any) -> SpeedBook:
        """A book from `dump`'s data; whatever is malformed is left out (measured again)."""
        book = cls()
        if not isinstance(data, dict):
            return book
        for item in data.get("frame") or []:
            if isinstance(item, list) and len(item) == 3:
                node, scene, seconds = item
                if isinstance(node, str) and isinstance(scene, str) and _seconds(seconds):
                    book.frame[node, scene] = min(
                        max(float(seconds), MIN_FRAME_SECONDS), MAX_FRAME_SECONDS
                    )
        # Within the bounds `observe_*` keep to (a book saved before them may hold more).
        bound = {"startup": lambda v: min(v, MAX_FRAME_SECONDS), "relative": _ratio, "base": _ratio}
        for name, within in bound.items():
            values = data.get(name)
            if isinstance(values, dict):
                getattr(book, name).update(
                    {
                        k: within(float(v))
                        for k, v in values.items()
                        if isinstance(k, str) and _seconds(v, zero=name == "startup")
                    }
                )
        return book

    def observe_frame(self, node: str, scene: str, seconds: float) -> None:
        # Nodes report these: a NaN or an infinity would poison every estimate made from them.
        if not _seconds(seconds):
            return
        seconds = min(max(seconds, MIN_FRAME_SECONDS), MAX_FRAME_SECONDS)
        self.changes += 1
        self.frame[node, scene] = _blend(self.frame.get((node, scene)), seconds)
        if scene not in self.base:
            self.base[scene] = _ratio(seconds / self.relative.get(node, 1.0))
        self.relative[node] = _ratio(_blend(self.relative.get(node), seconds / self.base[scene]))
        # Popped and put back: the scene goes to the end, `dump` keeps the latest ones.
        self.base[scene] = _ratio(_blend(self.base.pop(scene), seconds / self.relative[node]))

    def observe_startup(self, node: str, seconds: float) -> None:
        if _seconds(seconds, zero=True):
            self.changes += 1
            self.startup[node] = _blend(self.startup.get(node), min(seconds, MAX_FRAME_SECONDS))

    def overhead(self, node: str) -> float:
        measured = self.startup.get(node)
        return DEFAULT_OVERHEAD if measured is None else measured + ROUND_TRIPS

    def seconds_per_frame(self, node: str, scene: str) -> float | None:
        """Measured on this scene, else estimated from other scenes (None: unknown)."""
        known = self.frame.get((node, scene))
        if known is not None:
            return known
        if node in self.relative and scene in self.base:
            return self.relative[node] * self.base[scene]
        return None


class SlotKey(NamedTuple):
    """One render slot of a node: where a scheduler worker sends its batches."""

    url: str
    slot: int


@dataclass
class _Batch:
    frames: int
    seconds_per_frame: float | None
    overhead: float
    left: int | None = None  # frames not finished yet, once the node reports it running
    # When it began on the node: its dispatch to an idle slot, else when first seen running.
    began: float | None = None
    polled: float | None = None  # when the node last reported on it


@dataclass
class LaneBook:
    """Per render slot: the batches handed to it, in order."""

    batches: dict[SlotKey, dict[str, _Batch]] = field(default_factory=dict)

    def add(
        self,
        slot: SlotKey,
        batch: str,
        frames: int,
        spf: float | None,
        overhead: float,
        now: float,
    ) -> None:
        queue = self.batches.setdefault(slot, {})
        queue[batch] = _Batch(frames, spf, overhead, began=None if queue else now)

    def progress(self, slot: SlotKey, batch: str, left: int, spf: float | None, now: float) -> None:
        """The node reports the batch running with `left` frames not finished."""
        entry = self.batches.get(slot, {}).get(batch)
        if entry is not None:
            entry.left, entry.polled = left, now
            entry.seconds_per_frame = spf or entry.seconds_per_frame
            if entry.began is None:
                entry.began = now

    def remove(self, slot: SlotKey, batch: str) -> None:
        queue = self.batches.get(slot)
        if queue is not None:
            queue.pop(batch, None)
            if not queue:  # slots of nodes long gone must not stay forever
                del self.batches[slot]

    def free_at(self, slot: SlotKey, now: float, typical: float | None) -> float:
        """When the lane's handed-out batches should be done; `typical` stands in for unknown
        speeds (no estimate at all: one overhead a batch)."""
        end = now
        for i, entry in enumerate(self.batches.get(slot, {}).values()):
            spf = entry.seconds_per_frame or typical or 0.0
            if entry.left is not None and entry.polled is not None:
                # Counted from the report, not from now (reports of slow frames are seconds
                # apart); once a frame had ended, the one rendering then was half done, on
                # average.
                partial = 0.5 if 0 < entry.left < entry.frames else 0.0
                start = entry.polled if i == 0 else max(end, entry.polled)
                end = max(now, start + (entry.left - partial) * spf)
            else:
                end += entry.overhead + entry.frames * spf
        return end

    def lane(self, slot: SlotKey, spf: float | None, overhead: float, now: float) -> Lane:
        """The slot as sizing sees it: its speed, overhead and when its work should be done."""
        at_least = 0.0
        if spf is None:
            # No frame had finished at the last report: the first took at least this long.
            for entry in self.batches.get(slot, {}).values():
                if (
                    entry.began is not None
                    and entry.polled is not None
                    and entry.left == entry.frames
                ):
                    at_least = max(at_least, entry.polled - entry.began - overhead)
        return Lane(spf, overhead, self.free_at(slot, now, spf or at_least or None), at_least)
