"""Batching: how a job's frames are cut into the units of work that nodes pull. Pure, no I/O."""

from __future__ import annotations

import math

# Each batch pays Blender's start-up once (reading the .blend, building the BVH, compiling
# shaders: seconds to minutes for production scenes), so batches of several frames amortize it.
# But a batch is also the unit of imbalance: when the queue runs dry, the last batches decide
# the makespan, and a lost node costs up to one batch of work. Aiming for about 4 batches per
# slot bounds the tail to ~1/4 of a slot's share of the job while keeping per-batch overhead
# small; the cap keeps a single batch (and what a lost node throws away) bounded for huge jobs.
BATCHES_PER_SLOT = 4
DEFAULT_MAX_BATCH = 25


def auto_batch_size(frame_count: int, total_slots: int, max_batch: int = DEFAULT_MAX_BATCH) -> int:
    """The batch size for `frame_count` frames on a farm with `total_slots` render slots."""
    if frame_count <= 0:
        return 1
    slots = max(1, total_slots)
    # A farm of exactly one slot has no tail to balance: each extra batch would only be one
    # more Blender start-up (24 frames of the demo scene in 4 batches: +3 start-ups, ~1.8x the
    # bare render). No node yet (0 slots) still plans for more to come.
    per_slot = 1 if total_slots == 1 else BATCHES_PER_SLOT
    size = math.ceil(frame_count / (slots * per_slot))
    return max(1, min(size, max_batch))
