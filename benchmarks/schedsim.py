"""A discrete-event model of dynamic pull on unequal nodes (not a measurement).

Used in RESULTS.md to compare batching rules at the measured per-batch cost, and to check the
scheduler's sizing rule (orchestrator/sizing.py, called here as the scheduler calls it)
against the benchmark's numbers. Each batch costs the node `startup + frames x seconds`;
between batches a node waits `gap` (the poll that sees the last frame, dispatch) unless its
next batch was queued on it ahead of time (prefetch).

Rules:
- equal: the queue's batches as cut at submission, taken in turn (the scheduler before
  batch sizing);
- sized, cold: `next_batch_size` with speeds learned on the job (a first blind batch each,
  the speed known one frame and a poll after a node starts), next batch queued on the node
  `lead` seconds before the current one ends;
- sized, warm: the same with every speed known from an earlier job.

    python -m benchmarks.schedsim
"""

from __future__ import annotations

import heapq
import math

from benchmarks.common import table
from orchestrator.scheduling.sizing import Lane, next_batch_size

SPEEDS = (0.2, 0.2, 0.8)


def simulate_equal(
    *, batch: int = 10, startup: float = 1.0, gap: float = 0.3, frames: int = 120,
    speeds: tuple[float, ...] = SPEEDS,
) -> float:  # fmt: skip
    """Makespan of equal batches of `batch` frames pulled by idle nodes."""
    queue = [batch] * (frames // batch) + ([frames % batch] if frames % batch else [])
    events = [(0.0, i) for i in range(len(speeds))]
    end = 0.0
    while queue:
        now, u = heapq.heappop(events)
        done = now + startup + queue.pop(0) * speeds[u]
        heapq.heappush(events, (done + gap, u))
        end = max(end, done)
    return end


def simulate_sized(
    *, warm: bool, startup: float = 1.0, blind: int = 10, lead: float = 1.0, poll: float = 0.3,
    frames: int = 120, speeds: tuple[float, ...] = SPEEDS,
) -> float:  # fmt: skip
    """Makespan under the scheduler's sizing rule, with prefetch."""
    n = len(speeds)
    known_at = [0.0 if warm else math.inf] * n
    free_at = [0.0] * n
    events = [(0.0, i) for i in range(n)]
    remaining, end = frames, 0.0
    while remaining > 0:
        now, u = heapq.heappop(events)

        def lane(i: int, now: float = now) -> Lane:
            spf = speeds[i] if known_at[i] <= now else None
            return Lane(spf, startup, max(free_at[i], now))

        others = [lane(i) for i in range(n) if i != u]
        k = next_batch_size(lane(u), others, remaining, now, blind=blind, max_seconds=600)
        if k == 0:
            heapq.heappush(events, (now + 0.5, u))
            continue
        remaining -= k
        start = max(free_at[u], now) + startup
        free_at[u] = start + k * speeds[u]
        known_at[u] = min(known_at[u], start + speeds[u] + poll)
        end = max(end, free_at[u])
        # the next batch is asked for `lead` before this one ends, once the speed is known
        heapq.heappush(events, (max(free_at[u] - lead, known_at[u], now + poll), u))
    return end


def main() -> None:
    bound = 120 / sum(1 / s for s in SPEEDS)
    rows = []
    for startup, label in ((0.3, "nominal start-up"), (1.0, "measured per-batch cost")):
        cases = (
            ("equal batches of 10", simulate_equal(startup=startup)),
            ("sized, cold (first job)", simulate_sized(warm=False, startup=startup)),
            ("sized, warm (speeds known)", simulate_sized(warm=True, startup=startup)),
        )
        for rule, makespan in cases:
            rows.append([f"{rule}, {label} ({startup} s)", makespan, bound / makespan])
    table("model: 120 frames on 0.2/0.2/0.8 s nodes", ["rule", "makespan s", "efficiency"], rows)


if __name__ == "__main__":
    main()
