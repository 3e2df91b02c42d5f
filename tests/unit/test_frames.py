import pytest
from hypothesis import given
from hypothesis import strategies as st

from farm_common.frames import (
    FrameSpecError,
    compact_frames,
    parse_frame_spec,
)
from render_node.blender import blender_frame_args

HUGE = "1" + "0" * 5000


@pytest.mark.parametrize(
    ("spec", "frames"),
    [
        ("7", [7]),
        ("1-5", [1, 2, 3, 4, 5]),
        ("1-10x3", [1, 4, 7, 10]),
        ("1-10:3", [1, 4, 7, 10]),
        ("1,3,7", [1, 3, 7]),
        ("1-3, 2-5", [1, 2, 3, 4, 5]),
        ("10,1-3", [10, 1, 2, 3]),
        ("1-10,20-30x2", [*range(1, 11), *range(20, 31, 2)]),
        ("0", [0]),
        (" 4 - 6 ", [4, 5, 6]),
        ("0000007", [7]),
        ("1048574", [1048574]),
    ],
)
def test_parse_frame_spec_reads_every_form(spec: str, frames: list[int]) -> None:
    assert parse_frame_spec(spec) == frames


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("10-1", "reversed"),
        ("1-10x0", "at least 1"),
        ("a-b", "cannot read"),
        ("1-", "cannot read"),
        ("1,,2", "cannot read"),
        ("-5", "negative"),
        ("1-200000", "more than 100000"),
        ("1-60000,60001-120000", "more than 100000"),
        ("1-2000000", "past Blender"),
        (",".join(["1-90000"] * 6), "repeats too many"),
        # Past Python's 4,300-digit int() limit: a ValueError that is not the user's to fix.
        (HUGE, "more than 7 digits: Blender's last frame is 1048574"),
        (f"1-{HUGE}", "more than 7 digits"),
        (f"1-10x{HUGE}", "more than 7 digits"),
        (f"3,-{HUGE}", "more than 7 digits"),
        ("0" * 5000 + "1", "more than 7 digits"),
        ("10485740", "more than 7 digits"),
    ],
)
def test_parse_frame_spec_rejects_with_a_reason(spec: str, message: str) -> None:
    with pytest.raises(FrameSpecError, match=message):
        parse_frame_spec(spec)


def test_parse_frame_spec_accepts_exactly_the_limit() -> None:
    assert len(parse_frame_spec("1-100000")) == 100_000


@pytest.mark.parametrize(
    ("frames", "spec"),
    [
        ([1, 2, 3], "1-3"),
        ([5], "5"),
        ([1, 3, 5, 7], "1-7x2"),
        ([1, 3], "1,3"),
        ([1, 2, 3, 5, 7, 9, 10], "1-3,5-9x2,10"),
        ([], ""),
    ],
)
def test_compact_frames_writes_short_specs(frames: list[int], spec: str) -> None:
    assert compact_frames(frames) == spec


@given(st.lists(st.integers(min_value=0, max_value=5000), max_size=60, unique=True))
def test_compact_then_parse_round_trips(frames: list[int]) -> None:
    if frames:
        assert parse_frame_spec(compact_frames(frames)) == frames


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40), st.integers(1, 7)), min_size=1))
def test_parse_keeps_first_occurrence_order_without_duplicates(parts) -> None:
    spec = ",".join(f"{a}-{a + n}x{s}" for a, n, s in parts)
    expected: list[int] = []
    for a, n, s in parts:
        for f in range(a, a + n + 1, s):
            if f not in expected:
                expected.append(f)
    assert parse_frame_spec(spec) == expected


@pytest.mark.parametrize(
    ("frames", "args"),
    [
        ([4], ["-f", "4"]),
        ([1, 2, 3], ["-s", "1", "-e", "3", "-j", "1", "-a"]),
        ([1, 3, 5], ["-s", "1", "-e", "5", "-j", "2", "-a"]),
        ([1, 2, 7], ["-f", "1,2,7"]),
        ([9, 3], ["-f", "9,3"]),
    ],
)
def test_blender_frame_args_picks_range_or_list(frames: list[int], args: list[str]) -> None:
    assert blender_frame_args(frames) == args
