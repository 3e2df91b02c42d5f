"""The batch-size rule on a one-slot farm: nothing to balance, so no extra Blender start-ups."""

import pytest

from orchestrator.scheduling.batching import auto_batch_size


@pytest.mark.parametrize(
    ("frames", "slots", "size"),
    [
        (24, 1, 24),  # the demo scene on one node: one Blender start-up, as bare Blender
        (100, 1, 25),  # still within the cap
        (24, 2, 3),  # two slots: a tail to balance again
        (10, 0, 3),  # no node yet: plan for more to come
    ],
)
def test_one_slot_gets_one_batch_up_to_the_cap(frames: int, slots: int, size: int) -> None:
    assert auto_batch_size(frames, slots) == size
