"""The pacer's rule: node polls give way while the event loop lags, and come back after."""

from __future__ import annotations

import pytest

from orchestrator.pacing import MAX_SLOWDOWN, TARGET_LAG, adjust


def test_lag_above_target_stretches_polls_up_to_a_cap() -> None:
    slowdown = 1.0
    for _ in range(100):
        slowdown = adjust(slowdown, lag=0.5)
    assert slowdown == MAX_SLOWDOWN
    assert adjust(1.0, lag=TARGET_LAG * 2) == pytest.approx(1.25)


def test_no_lag_eases_back_to_the_configured_interval() -> None:
    slowdown = MAX_SLOWDOWN
    for _ in range(100):
        slowdown = adjust(slowdown, lag=0.0)
    assert slowdown == 1.0
    assert adjust(4.0, lag=TARGET_LAG / 2) == pytest.approx(3.6)
