"""A node's active hours, in its own local time: one window a day ("19:00-08:00") or a weekly
table ("mon-fri 19:00-08:00; sat,sun 00:00-24:00").

A window that passes midnight belongs to the day it starts on: "fri 19:00-08:00" runs from
Friday evening to Saturday morning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DAY_MINUTES = 24 * 60
_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]|24):([0-5]\d)$")
_SAY = "give HH:MM-HH:MM, or days and a window per entry: mon-fri 19:00-08:00; sat,sun 00:00-24:00"


@dataclass(frozen=True)
class Window:
    days: frozenset[int]  # 0 = Monday, the day each window starts on
    start: int  # minute of the day, inclusive
    end: int  # minute of the day, exclusive (1440: midnight); before `start`: the next day


def _day(name: str) -> int:
    """'fri' / 'Friday' -> 4 (time.struct_time.tm_wday); ValueError for anything else."""
    name = name.strip().lower()
    for number, day in enumerate(DAYS):
        if len(name) >= 3 and day.startswith(name):
            return number
    raise ValueError(name)


def _days(text: str, entry: str) -> frozenset[int]:
    """'mon-fri' / 'sat,sun' / 'fri-mon' (wraps) -> weekday numbers."""
    days: set[int] = set()
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            a = _day(first)
            b = _day(last) if last else a
        except ValueError:
            raise ValueError(
                f"active hours {entry!r}: {part.strip()!r} is not a day or a range of days "
                "(mon, tue, ... sun; mon-fri; sat,sun)"
            ) from None
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def _window(text: str, entry: str) -> tuple[int, int]:
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise ValueError(f"active hours {entry!r}: {_SAY}")
    start = int(match[1]) * 60 + int(match[2])
    end = int(match[3]) * 60 + int(match[4])
    if end > DAY_MINUTES:
        raise ValueError(f"active hours {entry!r}: 24:00 is the latest a window can end")
    if start == end:
        raise ValueError(f"active hours {entry!r}: the start and the end are the same minute")
    return start, end


def parse_schedule(text: str) -> list[Window]:
    """The windows of `text`; ValueError, saying how to write it, for anything else."""
    entries = [e.strip() for e in text.split(";")]
    if not any(entries):
        raise ValueError(f"active hours {text!r}: {_SAY}")
    windows = []
    for entry in entries:
        if not entry:
            continue
        days_text, _, hours = entry.rpartition(" ")
        days = _days(days_text, entry) if days_text.strip() else frozenset(range(7))
        start, end = _window(hours, entry)
        windows.append(Window(days, start, end))
    return windows


def within_schedule(windows: list[Window], weekday: int, minute: int) -> bool:
    """Whether `minute` of the day (0-1439) on `weekday` (0 = Monday) falls in a window."""
    for w in windows:
        if w.start < w.end:
            if weekday in w.days and w.start <= minute < w.end:
                return True
        elif (weekday in w.days and minute >= w.start) or (
            (weekday - 1) % 7 in w.days and minute < w.end
        ):
            return True
    return False
