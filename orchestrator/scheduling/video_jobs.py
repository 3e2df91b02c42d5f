"""Video jobs: frames of another job encoded to an mp4 on the orchestrator, by the preview
encoder (orchestrator/video.py). A video job is a job of the farm like a render: it is queued,
waits for the jobs it comes after (its source among them), can be cancelled and requeued; the
scheduler runs `encode_job` where it would dispatch batches."""

from __future__ import annotations

from pathlib import Path

from farm_common.frames import compact_frames, parse_frame_spec
from orchestrator.renders import output_suffix, video_path
from orchestrator.scheduling.interfaces import SchedulerStore
from orchestrator.store.db import Job
from orchestrator.video import DEFAULT_FPS, DEFAULT_TIMEOUT, VideoError, encode_video

# ffmpeg's budget grows with the frames: 10 minutes, and a second a frame.
SECONDS_PER_FRAME = 1.0


async def frames_missing(store: SchedulerStore, job: Job, frames: list[int]) -> list[int]:
    """Those of `frames` that `job` (a render job) has not put in place, in order."""
    done = set(await store.run(store.done_frames, job.id, job.pieces))
    return [f for f in frames if f not in done]


async def encode_job(
    job: Job, store: SchedulerStore, renders_dir: Path, ffmpeg: str = "ffmpeg"
) -> str | None:
    """Encode the video job `job` to its video.mp4; returns why it failed, None once the video
    is in place."""
    source = await store.run(store.get_job, job.source) if job.source else None
    if source is None:
        return f"job {job.source}, whose frames it encodes, is not on the farm any more"
    frames = parse_frame_spec(job.frames_spec)
    missing = await frames_missing(store, source, frames)
    if missing:
        return (
            f"frames {compact_frames(missing)} of job {source.id} are not rendered: render "
            f"them again (farm requeue {source.id}), then requeue this job"
        )
    out = video_path(renders_dir, job.id)
    try:
        await encode_video(
            video_path(renders_dir, source.id).parent, frames, out,
            fps=job.fps or DEFAULT_FPS, timeout=DEFAULT_TIMEOUT + SECONDS_PER_FRAME * len(frames),
            ffmpeg=ffmpeg, suffix=output_suffix(source.format),
        )  # fmt: skip
    except VideoError as exc:
        return f"{exc} (requeue this job to encode it again)"
    return None
