"""The preview video's ffmpeg command line and frame links, built without running ffmpeg."""

from __future__ import annotations

from pathlib import Path

import pytest

from farm_common.protocol import frame_printf_pattern
from orchestrator.video import (
    VideoError,
    ffmpeg_command,
    frame_file,
    is_contiguous,
    link_sequence,
)

FRAMES = Path("/farm/renders/job1")
OUT = Path("/farm/renders/job1/preview.mp4")


def value_after(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


@pytest.mark.parametrize(
    ("frames", "expected"),
    [
        ([7], True),
        ([1, 2, 3], True),
        ([10, 11, 12, 13], True),
        ([1, 3, 5], False),
        ([1, 2, 4], False),
        ([3, 2, 1], False),
    ],
)
def test_is_contiguous(frames: list[int], expected: bool) -> None:
    assert is_contiguous(frames) is expected


def test_contiguous_frames_read_the_numbered_files_from_the_first_frame() -> None:
    cmd = ffmpeg_command(FRAMES, list(range(101, 151)), OUT)
    assert value_after(cmd, "-i") == "/farm/renders/job1/" + frame_printf_pattern(".png")
    assert value_after(cmd, "-start_number") == "101"
    assert value_after(cmd, "-frames:v") == "50"
    assert value_after(cmd, "-framerate") == "24"
    assert "concat" not in cmd


def test_command_makes_browser_playable_h264_with_even_dimensions() -> None:
    cmd = ffmpeg_command(FRAMES, [1, 2], OUT)
    assert value_after(cmd, "-c:v") == "libx264"
    assert value_after(cmd, "-pix_fmt") == "yuv420p"
    assert value_after(cmd, "-movflags") == "+faststart"
    assert value_after(cmd, "-vf") == "scale=trunc(iw/2)*2:trunc(ih/2)*2"
    assert cmd[-1] == str(OUT)
    assert "-nostdin" in cmd and "-y" in cmd


def test_fps_and_ffmpeg_binary_are_configurable() -> None:
    cmd = ffmpeg_command(FRAMES, [1, 2, 3], OUT, fps=30, ffmpeg="/opt/ffmpeg")
    assert cmd[0] == "/opt/ffmpeg"
    assert value_after(cmd, "-framerate") == "30"


def test_input_may_be_files_read_as_images_and_nothing_else() -> None:
    cmd = ffmpeg_command(FRAMES, [1, 2], OUT)
    before_input = cmd[: cmd.index("-i")]
    assert value_after(before_input, "-protocol_whitelist") == "file"
    assert value_after(before_input, "-format_whitelist") == "image2"
    assert value_after(before_input, "-f") == "image2"
    assert "-xerror" in before_input  # a frame that does not decode fails the video
    assert "concat" not in " ".join(cmd)


def test_non_contiguous_frames_must_be_linked_into_a_sequence_first() -> None:
    with pytest.raises(VideoError, match="contiguous"):
        ffmpeg_command(FRAMES, [1, 3], OUT)


def test_link_sequence_names_the_frames_in_order_from_one(tmp_path: Path) -> None:
    renders, links = tmp_path / "renders", tmp_path / "links"
    renders.mkdir()
    links.mkdir()
    for frame in (5, 1, 30):
        frame_file(renders, frame).write_text(str(frame))
    link_sequence(renders, [5, 1, 30], links, ".png")
    assert [frame_file(links, i).read_text() for i in (1, 2, 3)] == ["5", "1", "30"]


@pytest.mark.parametrize("fps", [0, -24])
def test_fps_must_be_positive(fps: int) -> None:
    with pytest.raises(VideoError, match="fps"):
        ffmpeg_command(FRAMES, [1], OUT, fps=fps)


def test_no_frames_is_an_error() -> None:
    with pytest.raises(VideoError, match="no frames"):
        ffmpeg_command(FRAMES, [], OUT)


def test_other_image_formats_keep_the_frame_naming() -> None:
    cmd = ffmpeg_command(FRAMES, [1, 2], OUT, suffix=".jpg")
    assert value_after(cmd, "-i") == "/farm/renders/job1/" + frame_printf_pattern(".jpg")


def test_frame_numbers_past_99999_get_more_digits() -> None:
    assert frame_file(FRAMES, 123456).name == "frame_123456.png"
    assert frame_file(FRAMES, 7).name == "frame_00007.png"
