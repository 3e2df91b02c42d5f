"""encode_video with the real ffmpeg: a playable H.264 mp4 holding exactly the frames asked for."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.video import VideoError, encode_video, frame_file
from tests.fake_blender import png_bytes
from tests.servers import handler_server

needs_ffmpeg = pytest.mark.skipif(
    not (shutil.which("ffmpeg") and shutil.which("ffprobe")),
    reason="ffmpeg/ffprobe not installed (apt-get install ffmpeg)",
)


def write_frames(folder: Path, frames: list[int], width: int = 65, height: int = 37) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in frames:
        frame_file(folder, n).write_bytes(png_bytes(width, height, n * 7))


def probe(path: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,nb_read_frames,width,height,pix_fmt,r_frame_rate",
            "-of",
            "json",
            str(path),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    stream: dict[str, str] = json.loads(out)["streams"][0]
    return stream


@needs_ffmpeg
def test_contiguous_frames_encode_to_h264_with_every_frame(tmp_path: Path) -> None:
    frames = list(range(11, 41))
    write_frames(tmp_path / "renders", frames)
    out = asyncio.run(encode_video(tmp_path / "renders", frames, tmp_path / "v" / "video.mp4"))
    info = probe(out)
    assert info["codec_name"] == "h264"
    assert info["pix_fmt"] == "yuv420p"
    assert int(info["nb_read_frames"]) == len(frames)
    # 65x37 made even by the scale filter.
    assert (int(info["width"]), int(info["height"])) == (64, 36)
    assert info["r_frame_rate"] == "24/1"
    assert not list(tmp_path.glob("v/*.part"))


@needs_ffmpeg
def test_stepped_and_listed_frames_encode_to_exactly_those_frames(tmp_path: Path) -> None:
    frames = [1, 3, 5, 9, 10, 20, 2]
    write_frames(tmp_path, [*frames, 4, 6])  # frames on disk that were not asked for stay out
    out = asyncio.run(encode_video(tmp_path, frames, tmp_path / "video.mp4", fps=12))
    info = probe(out)
    assert info["codec_name"] == "h264"
    assert int(info["nb_read_frames"]) == len(frames)
    assert info["r_frame_rate"] == "12/1"


def test_missing_frame_files_are_named_in_the_error(tmp_path: Path) -> None:
    write_frames(tmp_path, [1, 2])
    with pytest.raises(VideoError, match=r"1 frame file\(s\) missing .*: 3"):
        asyncio.run(encode_video(tmp_path, [1, 2, 3], tmp_path / "video.mp4"))


@needs_ffmpeg
def test_ffmpeg_failure_reports_its_stderr_and_leaves_no_video(tmp_path: Path) -> None:
    # Nothing readable: ffmpeg fails (one broken frame among good ones: see the test below).
    frame_file(tmp_path, 1).write_bytes(b"this is not a png")
    frame_file(tmp_path, 2).write_bytes(b"nor is this")
    out = tmp_path / "video.mp4"
    with pytest.raises(VideoError, match="ffmpeg exited with") as caught:
        asyncio.run(encode_video(tmp_path, [1, 2], out))
    assert len(str(caught.value)) > len("ffmpeg exited with 1: ")
    assert not out.exists()
    assert not list(tmp_path.glob("*.part"))


def test_a_hung_ffmpeg_is_killed_at_the_timeout_and_reaped(tmp_path: Path) -> None:
    write_frames(tmp_path, [1, 2])
    pid_file = tmp_path / "pid"
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text(
        f"#!{sys.executable}\n"
        "import os, sys, time\n"
        f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
        "sys.stderr.write('starting\\n'); sys.stderr.flush()\n"
        "time.sleep(600)\n"
    )
    fake.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(VideoError, match=r"longer than 0\.5 s"):
        asyncio.run(
            encode_video(tmp_path, [1, 2], tmp_path / "video.mp4", timeout=0.5, ffmpeg=str(fake))
        )
    assert time.monotonic() - started < 10
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (tmp_path / "video.mp4").exists()


@pytest.fixture
def web_server() -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that records the paths asked of it."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    with handler_server(Handler) as url:
        yield url, hits


MANIFESTS = {
    "dash": """<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static" mediaPresentationDuration="PT1S">
 <Period><AdaptationSet mimeType="video/mp4"><Representation id="1" bandwidth="1000">
  <BaseURL>{url}/dash/</BaseURL><SegmentBase><Initialization sourceURL="init.mp4"/></SegmentBase>
 </Representation></AdaptationSet></Period></MPD>
""",
    "hls": "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n{url}/hls/segment.ts\n#EXT-X-ENDLIST\n",
    "hls of a local file": "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1.0,\n/etc/hostname\n"
    "#EXT-X-ENDLIST\n",
}


@needs_ffmpeg
@pytest.mark.parametrize("kind", sorted(MANIFESTS))
@pytest.mark.parametrize("frames", [[1, 2, 3], [1, 3, 5]], ids=["contiguous", "listed"])
def test_frame_files_that_are_manifests_are_decoded_as_images_never_parsed(
    tmp_path: Path, web_server: tuple[str, list[str]], kind: str, frames: list[int]
) -> None:
    """A node sent playlists named frame_0000N.png: ffmpeg reads them as PNGs (and fails),
    never as playlists to follow (before, the concat input probed HLS and tried its URL)."""
    url, hits = web_server
    for frame in frames:
        frame_file(tmp_path, frame).write_text(MANIFESTS[kind].format(url=url))
    with pytest.raises(VideoError) as caught:
        asyncio.run(encode_video(tmp_path, frames, tmp_path / "video.mp4", timeout=60))
    said = str(caught.value)
    assert "Invalid PNG signature" in said, said
    assert "whitelist" not in said and "hls" not in said and "dash" not in said, said
    assert hits == []


@needs_ffmpeg
@pytest.mark.parametrize("kind", [*sorted(MANIFESTS), "ffconcat"])
@pytest.mark.parametrize("frames", [[1, 2, 3], [1, 2, 4]], ids=["contiguous", "listed"])
def test_one_frame_that_is_not_its_image_among_real_ones_fails_the_encode(
    tmp_path: Path, web_server: tuple[str, list[str]], kind: str, frames: list[int]
) -> None:
    """frame_00002.png is a playlist, a manifest or an ffconcat script naming a PNG outside the
    job among real PNG frames: ffmpeg decodes it as a PNG and the encode fails. Before, the
    concat input (listed frames) parsed it and read what it named, and the image2 input
    (contiguous frames) repeated frame 1 in its place and called the video done."""
    url, hits = web_server
    renders = tmp_path / "renders"
    write_frames(renders, [f for f in frames if f != 2])
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes(65, 37, 200))
    script = f"ffconcat version 1.0\nfile '{outside}'\n"
    text = script if kind == "ffconcat" else MANIFESTS[kind].format(url=url)
    frame_file(renders, 2).write_text(text)
    out = tmp_path / "video.mp4"
    with pytest.raises(VideoError) as caught:
        asyncio.run(encode_video(renders, frames, out, timeout=60))
    said = str(caught.value)
    assert "Invalid PNG signature" in said, said
    assert hits == []
    assert not out.exists()
