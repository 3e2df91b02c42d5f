"""A node's active hours: when it takes batches, in its own local time."""

from __future__ import annotations

import time

import pytest

from farm_common.protocol import parse_active_hours, within_hours
from render_node.api.app import off_hours


def at(hour: int, minute: int = 0) -> int:
    return hour * 60 + minute


def test_a_night_window_wraps_past_midnight() -> None:
    night = parse_active_hours("19:00-08:00")
    assert night == (at(19), at(8))
    assert within_hours(night, at(19)) and within_hours(night, at(23, 59))
    assert within_hours(night, at(0)) and within_hours(night, at(7, 59))
    assert not within_hours(night, at(8)) and not within_hours(night, at(12))
    day = parse_active_hours(" 09:00-17:30 ")
    assert within_hours(day, at(9)) and within_hours(day, at(17, 29))
    assert not within_hours(day, at(17, 30)) and not within_hours(day, at(8, 59))


@pytest.mark.parametrize("bad", ["19-08", "25:00-08:00", "19:00-08:60", "10:00-10:00", ""])
def test_hours_that_are_not_a_window_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="active hours"):
        parse_active_hours(bad)


def test_a_node_outside_its_hours_says_so() -> None:
    noon = time.struct_time((2026, 12, 4, 12, 0, 0, 4, 338, 0))
    assert off_hours("19:00-08:00", noon)
    assert not off_hours("09:00-17:00", noon)
    assert not off_hours(None, noon)
