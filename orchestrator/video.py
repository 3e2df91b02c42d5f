"""Preview video: the ffmpeg command line for a job's frames (pure) and the process that runs it.

Frames live as `frame_00001.png` in a job's renders folder. A contiguous run is read by the
image2 demuxer with `-start_number`; any other set (steps, lists, frames that failed) is first
linked into a temporary folder as a contiguous run, so the video holds exactly the frames asked
for, in order, one per 1/fps.

Frames come from render nodes, which the orchestrator does not trust: ffmpeg may open files and
nothing else (`-protocol_whitelist file`), and only with the image2 demuxer
(`-format_whitelist image2`), which decodes each file as the image its extension names. A
playlist or manifest named frame_00003.png fails to decode; it is never parsed, its URLs never
fetched. (ffmpeg's concat demuxer, used before, probed each file by content.) A frame that does
not decode fails the whole encode (`-xerror`): ffmpeg would otherwise repeat the frame before it
and call the video done.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Sequence
from pathlib import Path

from farm_common.protocol import frame_name, frame_printf_pattern

log = logging.getLogger(__name__)

DEFAULT_FPS = 24
DEFAULT_TIMEOUT = 600.0
# libx264 with yuv420p needs even width and height; renders are often odd (e.g. 1080x607).
EVEN_SIZE_FILTER = "scale=trunc(iw/2)*2:trunc(ih/2)*2"
STDERR_TAIL_BYTES = 4000


class VideoError(RuntimeError):
    """The preview video could not be made; the message says why (ffmpeg's own words if any)."""


def frame_file(frames_dir: Path, frame: int, suffix: str = ".png") -> Path:
    """Where the orchestrator keeps a collected frame: `frame_00042.png` (5+ digits)."""
    return frames_dir / frame_name(frame, suffix)


def is_contiguous(frames: Sequence[int]) -> bool:
    return all(b == a + 1 for a, b in itertools.pairwise(frames))


# Input options: what ffmpeg may open to read the frames, and that a frame it cannot decode is
# an error (see the module's docstring).
INPUT_WHITELISTS = ["-protocol_whitelist", "file", "-format_whitelist", "image2"]
STRICT = ["-xerror"]


def ffmpeg_command(
    frames_dir: Path,
    frames: Sequence[int],
    out_path: Path,
    *,
    fps: int = DEFAULT_FPS,
    ffmpeg: str = "ffmpeg",
    suffix: str = ".png",
) -> list[str]:
    """The ffmpeg argv that encodes the contiguous `frames` to an H.264 mp4 at `out_path`
    (`link_sequence` makes any other set contiguous)."""
    if not frames:
        raise VideoError("no frames to encode")
    if fps <= 0:
        raise VideoError(f"fps must be positive, not {fps}")
    if not is_contiguous(frames):
        raise VideoError("frames must be contiguous: link them into a sequence first")
    return [
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *STRICT,
        *INPUT_WHITELISTS,
        "-f", "image2",
        "-framerate", str(fps),
        "-start_number", str(frames[0]),
        "-i", str(frames_dir / frame_printf_pattern(suffix)),
        "-frames:v", str(len(frames)),
        "-vf", EVEN_SIZE_FILTER,
        "-c:v", "libx264",
        "-pix_fmt", "yuv420p",
        "-movflags", "+faststart",
        "-f", "mp4",
        str(out_path),
    ]  # fmt: skip


def link_sequence(frames_dir: Path, frames: Sequence[int], into: Path, suffix: str) -> None:
    """Name `frames` (in order) 1, 2, 3... in `into`, as symbolic links to their files."""
    for i, frame in enumerate(frames, start=1):
        frame_file(into, i, suffix).symlink_to(frame_file(frames_dir.resolve(), frame, suffix))


def ffmpeg_available(ffmpeg: str = "ffmpeg") -> bool:
    return shutil.which(ffmpeg) is not None


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


async def _tail(stream: asyncio.StreamReader | None) -> bytes:
    """Drain `stream`, keeping only its last bytes: ffmpeg's error is at the end."""
    tail = b""
    if stream is None:
        return tail
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-STDERR_TAIL_BYTES:]
    return tail


async def encode_video(
    frames_dir: Path,
    frames: Sequence[int],
    out_path: Path,
    fps: int = DEFAULT_FPS,
    # The caller gives a budget rather than wrapping us: the timeout must kill ffmpeg's group.
    timeout: float = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    *,
    ffmpeg: str = "ffmpeg",
    suffix: str = ".png",
) -> Path:
    """Encode `frames` (numbers, in order) from `frames_dir` into `out_path`; return it.

    ffmpeg runs in its own process group, is killed as a group on timeout or cancellation and
    always awaited. The mp4 appears at `out_path` only when complete (written aside, renamed).
    """
    frames = list(frames)
    if not frames:
        raise VideoError("no frames to encode")
    missing = [f for f in frames if not frame_file(frames_dir, f, suffix).is_file()]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise VideoError(f"{len(missing)} frame file(s) missing in {frames_dir}: {shown}")
    if not ffmpeg_available(ffmpeg):
        raise VideoError(f"{ffmpeg!r} not found: install ffmpeg (apt-get install ffmpeg)")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".part")
    with tempfile.TemporaryDirectory(prefix="farm-video-") as tmp:
        source, sequence = frames_dir, frames
        if not is_contiguous(frames):
            source, sequence = Path(tmp), list(range(1, len(frames) + 1))
            await asyncio.to_thread(link_sequence, frames_dir, frames, source, suffix)
        cmd = ffmpeg_command(source, sequence, partial, fps=fps, ffmpeg=ffmpeg, suffix=suffix)
        log.info("encoding %d frames from %s to %s", len(frames), frames_dir, out_path)
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        done = False
        try:
            try:
                async with asyncio.timeout(timeout):
                    stderr = await _tail(proc.stderr)
                    returncode = await proc.wait()
            except TimeoutError:
                raise VideoError(
                    f"ffmpeg took longer than {timeout:g} s for {len(frames)} frames; killed"
                ) from None
            if returncode != 0:
                message = stderr.decode("utf-8", "replace").strip() or "(no output)"
                raise VideoError(f"ffmpeg exited with {returncode}: {message}")
            os.replace(partial, out_path)
            done = True
        finally:
            _kill_group(proc)
            await proc.wait()
            if not done:
                with contextlib.suppress(FileNotFoundError):
                    partial.unlink()
    log.info("encoded %s (%d frames)", out_path, len(frames))
    return out_path
