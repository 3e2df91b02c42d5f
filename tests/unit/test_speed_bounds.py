"""Seconds a node reports are finite (the protocol refuses NaN and infinity) but may still be
absurd: the speed book keeps every figure it derives finite, positive and bounded, so sizing
never meets an infinity, a zero to divide by, or a NaN."""

from __future__ import annotations

import math
import random

from orchestrator.scheduling.lanes import (
    MAX_FRAME_SECONDS,
    MAX_RATIO,
    MIN_FRAME_SECONDS,
    SpeedBook,
)
from orchestrator.scheduling.sizing import Lane, next_batch_size

GOOD, EVIL = "http://good:8100", "http://evil:8100"


def sound(book: SpeedBook) -> bool:
    values = [
        *book.frame.values(),
        *book.startup.values(),
        *book.relative.values(),
        *book.base.values(),
    ]
    return all(math.isfinite(v) and v >= 0 for v in values) and all(
        1 / MAX_RATIO <= v <= MAX_RATIO for v in (*book.relative.values(), *book.base.values())
    )


def test_a_huge_finite_time_does_not_overflow_into_a_division_by_zero() -> None:
    # Unbounded, this sequence made a relative speed infinite, a scene's cost 0, and the next
    # measurement on that scene divide by it (ZeroDivisionError in every batch of the scene).
    book = SpeedBook()
    book.observe_frame(GOOD, "x", 1e-3)
    book.observe_frame(EVIL, "x", 1e308)
    book.observe_frame(EVIL, "y", 1e308)
    book.observe_frame(GOOD, "y", 2.0)
    assert sound(book)
    for node in (GOOD, EVIL):
        for scene in ("x", "y", "never-rendered"):
            spf = book.seconds_per_frame(node, scene)
            assert spf is None or (math.isfinite(spf) and spf > 0)


def test_figures_stay_bounded_however_a_node_alternates_extremes() -> None:
    rng = random.Random(16)
    book = SpeedBook()
    scenes = ["a", "b", "c"]
    for _ in range(2000):
        node = rng.choice((GOOD, EVIL))
        seconds = rng.choice((1e-300, 1e-3, 1.0, 1e6, 1e300)) if node == EVIL else 1.0
        book.observe_frame(node, rng.choice(scenes), seconds)
    assert sound(book)
    assert all(MIN_FRAME_SECONDS <= s <= MAX_FRAME_SECONDS for s in book.frame.values())
    me = Lane(book.seconds_per_frame(GOOD, "a"), book.overhead(GOOD), 0.0)
    other = Lane(book.seconds_per_frame(EVIL, "a"), book.overhead(EVIL), 0.0)
    size = next_batch_size(me, [other], 1000, 0.0, blind=5, max_seconds=600)
    assert isinstance(size, int) and 0 <= size <= 100


def test_a_start_up_past_the_bound_is_taken_as_the_bound() -> None:
    book = SpeedBook()
    book.observe_startup(EVIL, 1e308)
    assert book.startup[EVIL] == MAX_FRAME_SECONDS
    assert math.isfinite(book.overhead(EVIL))


def test_a_saved_book_is_read_back_within_the_bounds() -> None:
    saved = {
        "frame": [[EVIL, "x", 1e308], [GOOD, "x", 1e-12]],
        "startup": {EVIL: 1e308},
        "relative": {EVIL: 1e308, GOOD: 1e-308},
        "base": {"x": 1e308},
    }
    book = SpeedBook.load(saved)
    assert sound(book)
    assert book.frame[EVIL, "x"] == MAX_FRAME_SECONDS
    assert book.frame[GOOD, "x"] == MIN_FRAME_SECONDS
    assert book.startup[EVIL] == MAX_FRAME_SECONDS
