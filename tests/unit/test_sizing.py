"""Batch sizing by node speed: the water-filling finish time and what each slot takes."""

from __future__ import annotations

import pytest

from orchestrator.scheduling.sizing import Lane, finish_time, next_batch_size

FAST = 0.2
SLOW = 0.8


def size(me: Lane, others: list[Lane], remaining: int, now: float = 0.0, **kw: float) -> int:
    options = {"blind": 10, "max_seconds": 600.0} | kw
    return next_batch_size(me, others, remaining, now, **options)  # type: ignore[arg-type]


def test_finish_time_of_one_lane_is_its_start_plus_its_work() -> None:
    assert finish_time([Lane(0.5, 1.0, 0.0)], 10, now=0.0) == pytest.approx(6.0)


def test_finish_time_shares_frames_by_speed() -> None:
    lanes = [Lane(FAST, 0.0, 0.0), Lane(FAST, 0.0, 0.0), Lane(SLOW, 0.0, 0.0)]
    # 5 + 5 + 1.25 frames a second
    assert finish_time(lanes, 90, now=0.0) == pytest.approx(8.0)


def test_a_lane_that_frees_after_the_others_finish_takes_no_part() -> None:
    lanes = [Lane(FAST, 0.0, 0.0), Lane(FAST, 0.0, 100.0)]
    assert finish_time(lanes, 10, now=0.0) == pytest.approx(2.0)


def test_finish_time_needs_a_lane_of_known_speed() -> None:
    with pytest.raises(ValueError):
        finish_time([Lane(None, 1.0, 0.0)], 10, now=0.0)


def test_unknown_speed_takes_the_blind_size_but_never_more_than_is_left() -> None:
    assert size(Lane(None, 1.0, 0.0), [], 120) == 10
    assert size(Lane(None, 1.0, 0.0), [], 3) == 3


def test_nothing_left_means_nothing_taken() -> None:
    assert size(Lane(FAST, 0.0, 0.0), [], 0) == 0


def test_known_speeds_split_the_job_in_proportion_in_one_batch_each() -> None:
    """120 frames on 0.2/0.2/0.8 s nodes whose next batch costs 1 s: asked in turn, they take
    53/54/13 or so, each its whole part (half a part would not be worth a second start-up)."""
    lanes = [Lane(FAST, 1.0, 0.0), Lane(FAST, 1.0, 0.0), Lane(SLOW, 1.0, 0.0)]
    remaining = 120
    taken = []
    for i, lane in enumerate(lanes):
        others = [o for j, o in enumerate(lanes) if j != i]
        n = size(lane, others, remaining)
        # what the lane now holds: the others see it busy until it is done
        lanes[i] = Lane(lane.seconds_per_frame, lane.overhead, lane.overhead + n * SPEED[i])
        remaining -= n
        taken.append(n)
    assert sum(taken) == 120
    assert taken[0] in (52, 53, 54) and taken[1] in (52, 53, 54) and taken[2] in (12, 13, 14)


def test_cheap_batches_take_half_a_part_and_shrink_to_a_frame_at_the_end() -> None:
    """Warm slots (a batch costs 0.15 s) on 3 s/3 s/6 s frames: each takes half of its part
    and comes back; the batches shrink geometrically to a frame, every frame is taken once,
    and the lanes end within a frame of each other."""
    speed = [3.0, 3.0, 6.0]
    free = [0.0, 0.0, 0.0]
    batches: list[list[int]] = [[], [], []]
    remaining = 60
    while remaining:
        i = min(range(3), key=lambda k: free[k])  # the lane that frees first asks next
        lanes = [Lane(speed[k], 0.15, free[k]) for k in range(3)]
        n = size(lanes[i], lanes[:i] + lanes[i + 1 :], remaining, now=free[i])
        if n == 0:
            free[i] = max(free)  # it leaves the rest to the others
            continue
        batches[i].append(n)
        free[i] += 0.15 + n * speed[i]
        remaining -= n
    assert sum(map(sum, batches)) == 60
    for sizes in batches:
        assert sizes == sorted(sizes, reverse=True) and len(sizes) >= 3
    assert batches[0][0] == 12  # half of the fast lane's 24
    assert batches[0][-1] == batches[1][-1] == 1
    assert max(free) - min(free) <= 6.0


def test_a_part_is_not_halved_when_the_batch_costs_more_than_the_split_saves() -> None:
    # 20 frames of 0.2 s: halving saves 10 % of 2 s = 0.2 s; a start-up of 0.5 s costs more
    assert size(Lane(FAST, 0.5, 0.0), [], 20) == 20
    assert size(Lane(FAST, 0.15, 0.0), [], 20) == 10


SPEED = (FAST, FAST, SLOW)


def test_slow_lane_near_the_end_leaves_the_frames_to_faster_ones() -> None:
    fast = [Lane(FAST, 0.5, 0.2), Lane(FAST, 0.5, 0.2)]
    # 4 frames left: the fast lanes, free at 0.2 s, finish them by 1.1 s; the slow lane, busy
    # until 1.0 s, would only start its first at 1.5 s: it takes none.
    assert size(Lane(SLOW, 0.5, 1.0), fast, 4) == 0
    # alone, it takes everything
    assert size(Lane(SLOW, 0.5, 1.0), [], 4) == 4


def test_batch_is_capped_by_expected_seconds() -> None:
    assert size(Lane(1.0, 0.0, 0.0), [], 10_000, max_seconds=600, max_frames=1000) == 600


def test_unknown_other_lanes_count_at_the_median_known_speed() -> None:
    me = Lane(FAST, 1.0, 0.0)
    assert size(me, [Lane(None, 1.0, 0.0)], 100) == size(me, [Lane(FAST, 1.0, 0.0)], 100) == 50


def test_an_unknown_lane_that_has_shown_it_is_slow_counts_as_slow() -> None:
    me = Lane(FAST, 2.0, 0.0)
    # its first frame has been rendering for 0.8 s: it gets little of the share
    assert size(me, [Lane(None, 2.0, 0.0, at_least=SLOW)], 100) == 80


def test_a_last_frame_shared_by_equal_slots_is_still_taken() -> None:
    """One frame, three idle equal slots: a third of a frame each rounds to none; the first to
    ask takes it."""
    others = [Lane(FAST, 0.5, 0.0), Lane(FAST, 0.5, 0.0)]
    assert size(Lane(FAST, 0.5, 0.0), others, 1) == 1
    # a slot that would finish it later than another leaves it
    assert size(Lane(FAST, 0.5, 5.0), others, 1) == 0


def test_batch_is_capped_in_frames() -> None:
    assert size(Lane(0.001, 0.0, 0.0), [], 10_000, max_frames=100) == 100
