"""How many frames a render slot takes next: sized to its speed and to what is left. Pure.

Equal batches cut at submission ignore node speeds: near the end of a job a slow node pulls a
batch as large as a fast node's and the farm waits for it. Here a batch is cut when a slot asks
for work, from what the scheduler has measured:

- every slot ("lane") has a speed (seconds a frame, measured on this job's frames, or unknown),
  a per-batch overhead (Blender's start-up plus the round trips) and the time its work already
  handed out should be done;
- the frames left are shared out as if every lane rendered until one common finish time T,
  each starting once it is free and has paid one start-up (water filling);
- the asking lane takes its part: what it can render by T. A lane that cannot finish a single
  frame by T takes none and leaves the frames to faster lanes;
- or half of its part, when the half is worth a batch of its own: measured speeds are only
  estimates (a node slows down while others share its CPU, speeds up when they stop), and a
  part handed out in one piece ends off T by the error on all of it. The lane comes back for
  the other half sized by fresher figures, so its batches shrink geometrically towards T --
  down to a frame on a warm slot, whose next batch costs only the round trips.

A lane of unknown speed (the first batch of a job) takes a "blind" batch, small enough that a
slow node does not sit on a large share before the farm knows it is slow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# How far off a measured speed may be for the rest of a job (the error that splitting a part
# corrects). A part is halved while SPEED_ERROR times half of its seconds, the end imbalance
# the split saves, exceeds the overhead of the extra batch.
SPEED_ERROR = 0.1


@dataclass(frozen=True)
class Lane:
    """One render slot as the scheduler sees it."""

    seconds_per_frame: float | None  # None: not measured yet
    overhead: float  # what one more batch costs before its first frame, in seconds
    free_at: float  # when the work already handed to it should be done (absolute time)
    # Unmeasured, but its first frame has been rendering this long: it is at least this slow.
    at_least: float = 0.0


def finish_time(lanes: Sequence[Lane], frames: int, now: float) -> float:
    """The common time T by which `lanes` (all of known speed) render `frames` more frames.

    Each lane renders from max(free_at, now) + overhead at its own speed; T solves
    sum(rate * max(0, T - start)) = frames.
    """
    timed = sorted(
        (max(lane.free_at, now) + lane.overhead, 1.0 / lane.seconds_per_frame)
        for lane in lanes
        if lane.seconds_per_frame
    )
    if not timed:
        raise ValueError("no lane of known speed")
    rate = weighted = 0.0
    finish = math.inf
    for i, (start, lane_rate) in enumerate(timed):
        rate += lane_rate
        weighted += lane_rate * start
        finish = (frames + weighted) / rate
        if i + 1 == len(timed) or finish <= timed[i + 1][0]:
            break
    return finish


def next_batch_size(
    me: Lane,
    others: Sequence[Lane],
    remaining: int,
    now: float,
    *,
    blind: int,
    max_seconds: float,
    max_frames: int = 100,
) -> int:
    """How many of the `remaining` frames the lane `me` takes now (0: none, leave them).

    `others` are the farm's other lanes; those of unknown speed count at the median known
    speed, or as slow as they have shown to be at least. `blind` is the size for a lane of
    unknown speed; `max_seconds` bounds a batch's expected render time (one batch is the unit
    a lost node or a late priority waits for) and `max_frames` its length (every poll of a
    batch reads the state of each of its frames).
    """
    if remaining <= 0:
        return 0
    spf = me.seconds_per_frame
    if not spf:
        return max(1, min(blind, remaining))
    known = sorted(o.seconds_per_frame for o in others if o.seconds_per_frame)
    typical = known[len(known) // 2] if known else spf
    lanes = [me] + [
        o if o.seconds_per_frame else Lane(max(typical, o.at_least), o.overhead, o.free_at)
        for o in others
    ]
    start = max(me.free_at, now) + me.overhead
    share = (finish_time(lanes, remaining, now) - start) / spf
    if not math.isfinite(share):  # the lanes' figures are checked where they come in; still
        return max(1, min(blind, remaining))
    size = min(round(share), remaining)
    if size > 1 and SPEED_ERROR * (size / 2) * spf > me.overhead:
        size = math.ceil(size / 2)
    if size <= 0:
        # Shares of under half a frame round to none for everyone: the slot that would finish
        # a frame first still takes one, or nobody would.
        first = min(
            (max(o.free_at, now) + o.overhead + (o.seconds_per_frame or 0.0) for o in lanes[1:]),
            default=math.inf,
        )
        size = 1 if start + spf <= first else 0
    return max(0, min(size, max_frames, max(1, math.floor(max_seconds / spf))))
