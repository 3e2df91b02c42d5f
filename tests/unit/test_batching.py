import pytest
from hypothesis import given
from hypothesis import strategies as st

from orchestrator.scheduling.batching import auto_batch_size
from orchestrator.store.transitions import split_batches


@pytest.mark.parametrize(
    ("frames", "slots", "size"),
    [
        (0, 3, 1),
        (1, 3, 1),
        (8, 3, 1),  # tiny job: one frame per batch keeps every slot busy
        (24, 3, 2),
        (250, 3, 21),
        (250, 30, 3),
        (100_000, 3, 25),  # capped: a lost node throws away at most one small batch
        (10, 0, 3),  # no node yet: plan for one slot
    ],
)
def test_auto_batch_size_amortizes_startup_and_keeps_tail_short(
    frames: int, slots: int, size: int
) -> None:
    assert auto_batch_size(frames, slots) == size


@given(st.integers(1, 200_000), st.integers(0, 500), st.integers(1, 100))
def test_auto_batch_size_is_within_bounds(frames: int, slots: int, cap: int) -> None:
    size = auto_batch_size(frames, slots, cap)
    assert 1 <= size <= cap


@given(st.lists(st.integers(0, 10_000), unique=True, max_size=300), st.integers(1, 40))
def test_split_batches_puts_every_frame_in_exactly_one_batch_in_order(
    frames: list[int], size: int
) -> None:
    batches = split_batches(frames, size)
    assert [f for b in batches for f in b] == frames
    assert all(1 <= len(b) <= size for b in batches)


def test_split_batches_refuses_zero_size() -> None:
    with pytest.raises(ValueError):
        split_batches([1, 2], 0)
