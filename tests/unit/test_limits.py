"""The per-client token bucket behind POST /render's rate limit, on a fake clock."""

from __future__ import annotations

import pytest

from farm_common.limits import RateLimiter, size_text


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_rate_passes_then_the_next_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock=clock)  # one a second, bursts of 60
    assert [limiter.check("a") for _ in range(60)] == [0.0] * 60
    assert limiter.check("a") == pytest.approx(1.0)


def test_tokens_come_back_with_time() -> None:
    clock = Clock()
    limiter = RateLimiter(6, burst=1, clock=clock)  # one every 10 s
    assert limiter.check("a") == 0.0
    assert limiter.check("a") == pytest.approx(10.0)
    clock.now += 4
    assert limiter.check("a") == pytest.approx(6.0)
    clock.now += 6
    assert limiter.check("a") == 0.0


def test_clients_have_their_own_buckets() -> None:
    limiter = RateLimiter(1, clock=Clock())
    assert limiter.check("a") == 0.0
    assert limiter.check("a") > 0
    assert limiter.check("b") == 0.0


def test_buckets_of_idle_clients_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(60, burst=1, clock=clock)
    limiter.MAX_CLIENTS = 10
    for i in range(10):
        limiter.check(f"c{i}")
    clock.now += 5  # every bucket full again
    limiter.check("new")
    assert len(limiter._buckets) == 1


@pytest.mark.parametrize(
    ("size", "text"), [(1 << 20, "1 MB"), (3 << 19, "1.5 MB"), (65536, "64 KB")]
)
def test_size_text(size: int, text: str) -> None:
    assert size_text(size) == text
