"""What is done to a job after it was submitted, beside cancelling it: requeue frames of it
(or resume it), make a video of its frames (a video job), delete it with its frames."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from fastapi import APIRouter

from farm_common.errors import (
    BadRequest,
    Conflict,
    Unavailable,
    error_response,
)
from farm_common.frames import FrameSpecError, compact_frames, parse_frame_spec
from farm_common.paths import check_job_id
from farm_common.protocol import JobState
from orchestrator.api.authorization import PrincipalDep
from orchestrator.api.deps import (
    FarmDep,
    JobDep,
    OwnJobDep,
    check_after,
    no_such_job,
    too_many_jobs,
)
from orchestrator.api.models import (
    RenderCreated,
    RenderDeleted,
    RenderRequeued,
    RequeueRequest,
    VideoRequest,
)
from orchestrator.renders import forget_units
from orchestrator.runtime.loop_thread import BackendUnavailable
from orchestrator.scheduling.video_jobs import frames_missing
from orchestrator.store.queries import Job
from orchestrator.video import ffmpeg_available

router = APIRouter(prefix="/render")


def wanted_frames(job: Job, spec: str) -> list[int]:
    """The frames of `spec`, each of them a frame of `job`; 400 otherwise."""
    try:
        frames = parse_frame_spec(spec)
    except FrameSpecError as exc:
        raise BadRequest(str(exc)) from None
    outside = sorted(set(frames) - set(parse_frame_spec(job.frames_spec)))
    if outside:
        shown = ", ".join(map(str, outside[:10])) + (", ..." if len(outside) > 10 else "")
        raise BadRequest(f"frames {shown} are not frames of job {job.id} ({job.frames_spec})")
    return frames


@router.post(
    "/{job_id}/requeue",
    status_code=202,
    response_model=RenderRequeued,
    responses={409: error_response("nothing of the job to render again")},
)
async def requeue(farm: FarmDep, job: OwnJobDep, body: RequeueRequest) -> RenderRequeued:
    """Render frames of the job again: `frames` (done ones too: their files are replaced), or
    `failed` (every frame not done). A job that had ended is queued again with the frames it
    never rendered, so `{"failed": true}` resumes a cancelled job. Their attempts and the
    nodes they failed on start over; GET /render/ID lists each requeue under `requeues`."""
    if job.is_video:
        return await _encode_again(farm, job)
    frames = None if body.frames is None else wanted_frames(job, body.frames)
    asked = "failed" if frames is None else body.frames or ""
    done = await farm.store.run(farm.store.requeue, job.id, frames, asked, farm.clock())
    if done is None:
        raise no_such_job(job.id)
    if not done.batches:
        what = "failed frame" if frames is None else "done or failed frame among those"
        raise Conflict(
            f"job {job.id} is {job.state} and has no {what} to render again"
            + ("" if frames is None else f" ({body.frames}): the others are on their way")
        )
    # The files of frames rendered again go now: one on disk would count as collected after
    # a restart. A video of the job is made again when it completes.
    renders: Path = farm.settings.renders_dir
    await asyncio.to_thread(
        forget_units, renders, job.id, done.were_done, job.format, job.tiles, job.sample_parts
    )
    after = await farm.store.run(farm.store.get_job, job.id) or job
    try:
        await farm.link.enqueue(after, done.batches)
    except BackendUnavailable as exc:
        raise Unavailable(
            f"job {job.id}'s frames are requeued in the store, but the scheduler did not "
            f"confirm it ({exc}): restarting the orchestrator queues them for sure",
            headers={"Retry-After": "5"},
        ) from None
    return RenderRequeued(
        id=job.id,
        state=JobState(after.state),
        status_url=f"/render/{job.id}",
        requeued=done.frames,
        frames=len(done.frame_numbers),
    )


async def _enqueue(farm: FarmDep, job: Job, what: str) -> None:
    try:
        await farm.link.enqueue(job, [])
    except BackendUnavailable as exc:
        raise Unavailable(
            f"job {job.id} is {what} in the store, but the scheduler did not confirm it ({exc}): "
            "restarting the orchestrator queues it for sure",
            headers={"Retry-After": "5"},
        ) from None


async def _encode_again(farm: FarmDep, job: Job) -> RenderRequeued:
    """A video job is requeued whole, whatever the body asks: it encodes again."""
    if not await farm.store.run(farm.store.restart_video, job.id, farm.clock()):
        raise Conflict(f"job {job.id} is {job.state}: its video is on its way")
    await _enqueue(farm, job, "requeued")
    return RenderRequeued(
        id=job.id, state=JobState.QUEUED, status_url=f"/render/{job.id}",
        requeued=job.frames_spec, frames=job.total,
    )  # fmt: skip


@router.post(
    "/{job_id}/video",
    status_code=202,
    response_model=RenderCreated,
    responses={
        409: error_response("the job ended without frames asked for"),
        503: error_response("no ffmpeg on the orchestrator"),
    },
)
async def video(farm: FarmDep, job: JobDep, body: VideoRequest, who: PrincipalDep) -> RenderCreated:
    """A video job: the job's frames (all, or `frames`) encoded to an H.264 mp4 at `fps` on
    the orchestrator, once the job completed (and the jobs of `after`). It is a job of its own:
    GET /render/ID follows it, its video is at /render/ID/video.mp4, and it fails, saying why,
    when its render job fails or is cancelled. A job that has ended is encoded at once from the
    frames it has (asking for frames it lacks is a 409)."""
    if job.is_video:
        raise BadRequest(
            f"job {job.id} is a video job: give the render job whose frames to encode "
            f"({job.source})"
        )
    frames = (
        parse_frame_spec(job.frames_spec)
        if body.frames is None
        else wanted_frames(job, body.frames)
    )
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        missing = await frames_missing(farm.store, job, frames)
        if missing:
            raise Conflict(
                f"job {job.id} is {job.state} and frames {compact_frames(missing)} of it are "
                f"not rendered: requeue them first (farm requeue {job.id}), or ask for the "
                "frames it has"
            )
    if not ffmpeg_available():
        raise Unavailable(
            "the orchestrator has no ffmpeg: install it there (apt-get install ffmpeg)"
        )
    await check_after(farm, body.after)
    # The render job is waited for while it runs; one that has ended is not (a failed one
    # would fail the video, which asks only for frames it has).
    unfinished = job.state in (JobState.QUEUED, JobState.RUNNING)
    after = list(dict.fromkeys(([job.id] if unfinished else []) + body.after))
    limit = farm.settings.max_queued_jobs

    def create() -> Job | None:
        if farm.store.count_unfinished_jobs() >= limit:
            return None
        return farm.store.create_video_job(
            job, compact_frames(frames), len(frames), fps=body.fps,
            priority=job.priority if body.priority is None else body.priority, after=after,
            now=farm.clock(), submitted_by=who.name,
        )  # fmt: skip

    made = await farm.store.run(create)
    if made is None:
        raise too_many_jobs(limit)
    await _enqueue(farm, made, "saved")
    return RenderCreated(
        id=made.id, status_url=f"/render/{made.id}", state=JobState(made.state),
        frames=len(frames), batch_size=len(frames),
    )  # fmt: skip


@router.post(
    "/{job_id}/delete",
    response_model=RenderDeleted,
    responses={409: error_response("the job is unfinished, or its batches are stopping")},
)
async def delete(farm: FarmDep, job: OwnJobDep) -> RenderDeleted:
    """Remove a job that has ended, with its frames on disk (and its video): it is gone from
    the farm for good. A queued or running job is a 409: cancel it first."""
    why = await farm.link.delete(job.id)
    if why == "missing":
        raise no_such_job(job.id)
    if why == "stopping":
        raise Conflict(
            f"job {job.id} was just cancelled and its batches are still stopping: try again "
            "in a few seconds",
            headers={"Retry-After": "2"},
        )
    if why is not None:
        raise Conflict(f"job {job.id} is {why}: cancel it first (DELETE /render/{job.id})")
    folder = farm.settings.renders_dir / check_job_id(job.id)
    files, size = await asyncio.to_thread(_remove_folder, folder)
    return RenderDeleted(id=job.id, deleted=True, files=files, bytes=size)


def _remove_folder(folder: Path) -> tuple[int, int]:
    """Delete `folder` and what is in it; returns (files, bytes) it held."""
    files = size = 0
    for path in folder.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
    shutil.rmtree(folder, ignore_errors=True)
    return files, size
