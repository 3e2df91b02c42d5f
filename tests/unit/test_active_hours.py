"""A node's active hours: when it takes batches, in its own local time."""

from __future__ import annotations

import time

import pytest

from farm_common.schedule import Window, parse_schedule, within_schedule
from render_node.api.app import off_hours

MON, TUE, FRI, SAT, SUN = 0, 1, 4, 5, 6


def at(hour: int, minute: int = 0) -> int:
    return hour * 60 + minute


def test_a_night_window_wraps_past_midnight() -> None:
    night = parse_schedule("19:00-08:00")
    assert night == [Window(frozenset(range(7)), at(19), at(8))]
    assert within_schedule(night, TUE, at(19)) and within_schedule(night, TUE, at(23, 59))
    assert within_schedule(night, TUE, at(0)) and within_schedule(night, TUE, at(7, 59))
    assert not within_schedule(night, TUE, at(8)) and not within_schedule(night, TUE, at(12))
    day = parse_schedule(" 09:00-17:30 ")
    assert within_schedule(day, SUN, at(9)) and within_schedule(day, SUN, at(17, 29))
    assert not within_schedule(day, SUN, at(17, 30)) and not within_schedule(day, SUN, at(8, 59))


@pytest.mark.parametrize(
    ("day", "hour", "inside"),
    [
        (MON, 12, False),  # a working day at noon
        (MON, 19, True),
        (TUE, 7, True),  # Monday night runs into Tuesday morning
        (MON, 7, False),  # Sunday's window is the whole day, and ends at midnight
        (FRI, 23, True),
        (SAT, 7, True),  # Friday night runs into Saturday morning ...
        (SAT, 12, True),  # ... and the weekend is whole
        (SUN, 23, True),
    ],
)
def test_a_weekly_table_covers_nights_and_weekends(day: int, hour: int, inside: bool) -> None:
    table = parse_schedule("mon-fri 19:00-08:00; sat,sun 00:00-24:00")
    assert within_schedule(table, day, at(hour)) is inside


def test_day_ranges_wrap_over_the_week_and_names_are_case_blind() -> None:
    (window,) = parse_schedule("Fri-Mon 10:00-12:00")
    assert window.days == frozenset({FRI, SAT, SUN, MON})
    (window,) = parse_schedule("tuesday 10:00-12:00")
    assert window.days == frozenset({TUE})


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ("19-08", "HH:MM-HH:MM"),
        ("25:00-08:00", "HH:MM-HH:MM"),
        ("19:00-08:60", "HH:MM-HH:MM"),
        ("10:00-10:00", "same minute"),
        ("", "HH:MM-HH:MM"),
        (" ; ", "HH:MM-HH:MM"),
        ("24:00-08:00", "HH:MM-HH:MM"),
        ("00:00-24:30", "24:00 is the latest"),
        ("weekdays 19:00-08:00", "'weekdays' is not a day"),
        ("monkey 19:00-08:00", "is not a day"),
        ("mon-fri 19:00-08:00; sat", "HH:MM-HH:MM"),
    ],
)
def test_hours_that_are_not_a_schedule_are_refused(bad: str, says: str) -> None:
    with pytest.raises(ValueError, match="active hours") as caught:
        parse_schedule(bad)
    assert says in str(caught.value)


def test_a_node_outside_its_hours_says_so() -> None:
    friday_noon = time.struct_time((2026, 12, 4, 12, 0, 0, FRI, 338, 0))
    assert off_hours("19:00-08:00", friday_noon)
    assert not off_hours("09:00-17:00", friday_noon)
    assert off_hours("sat,sun 00:00-24:00", friday_noon)
    assert not off_hours("mon-fri 09:00-17:00; sat,sun 10:00-14:00", friday_noon)
    assert not off_hours(None, friday_noon)
