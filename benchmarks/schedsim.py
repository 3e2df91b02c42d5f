"""A discrete-event model of dynamic pull on unequal nodes (not a measurement).

Used in RESULTS.md to say what the scheduling target would take. Each batch costs the node
`startup + overhead + frames x seconds`; `overhead` (~0.5-0.6 s measured per batch on the
loaded test machine: fake Blender's Python, spawn, the poll that sees the last frame,
dispatch) is what prefetching the next batch onto the node would remove (down to the
~0.13 s Python start). Calibration: the `equal` rule at overhead 0.6 gives 17.8 s, the
benchmark measured 17.0-17.9 s.

Rules:
- equal: the queue's batches as cut at submission (today's scheduler);
- cap: near the end (<= 2 batches a slot queued), a node takes at most what it can render
  before the farm would drain the queue, and none when that is less than one frame
  (only nodes 1.5x slower than the fastest are capped);
- speed: a first probe batch per node, then each node takes its share of what is left by its
  measured speed (GSS-like), at most `big` frames.

    python -m benchmarks.schedsim
"""

from __future__ import annotations

import heapq
import math

from benchmarks.common import table

SPEEDS = (0.2, 0.2, 0.8)


def simulate(
    rule: str,
    *,
    batch: int = 10,
    overhead: float = 0.6,
    startup: float = 0.3,
    frames: int = 120,
    speeds: tuple[float, ...] = SPEEDS,
    probe: int = 5,
    big: int = 25,
) -> float:
    """The makespan of `frames` under `rule`."""
    queue = [batch] * (frames // batch) + ([frames % batch] if frames % batch else [])
    remaining = frames
    rate = sum(1 / s for s in speeds)
    fastest = min(speeds)
    known = [False] * len(speeds)
    events = [(0.0, i) for i in range(len(speeds))]
    heapq.heapify(events)
    end = 0.0
    while remaining > 0:
        now, u = heapq.heappop(events)
        if rule == "speed":
            n = (
                probe
                if not known[u]
                else min(big, max(1, math.floor(remaining / rate / speeds[u])))
            )
        else:
            n = queue[0]
            slow = speeds[u] > 1.5 * fastest
            if rule == "cap" and known[u] and slow and len(queue) <= 2 * len(speeds):
                cap = math.floor(remaining / rate / speeds[u])
                if cap < 1:
                    heapq.heappush(events, (now + 0.5, u))
                    continue
                n = min(n, cap)
        n = min(n, remaining)
        remaining -= n
        if rule != "speed":
            if n < queue[0]:
                queue[0] -= n
            else:
                queue.pop(0)
        known[u] = True
        done = now + startup + overhead + n * speeds[u]
        heapq.heappush(events, (done, u))
        end = max(end, done)
    return end


def main() -> None:
    bound = 120 / sum(1 / s for s in SPEEDS)
    rows = []
    for overhead, label in ((0.6, "measured per-batch cost"), (0.13, "with prefetch")):
        for rule in ("equal", "cap", "speed"):
            makespan = simulate(rule, overhead=overhead)
            rows.append([f"{rule}, {label} ({overhead} s)", makespan, bound / makespan])
    table("model: 120 frames on 0.2/0.2/0.8 s nodes + 0.3 s start-up", ["rule", "makespan s",
          "efficiency"], rows)  # fmt: skip


if __name__ == "__main__":
    main()
