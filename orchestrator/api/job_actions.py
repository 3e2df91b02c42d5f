"""What is done to a job after it was submitted, beside cancelling it: requeue frames of it
(or resume it) and delete it with its frames."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from fastapi import APIRouter

from farm_common.errors import BadRequest, Conflict, Unavailable
from farm_common.frames import FrameSpecError, parse_frame_spec
from farm_common.paths import check_job_id
from farm_common.protocol import JobState
from orchestrator.api.deps import FarmDep, JobDep, no_such_job
from orchestrator.api.models import RenderDeleted, RenderRequeued, RequeueRequest
from orchestrator.renders import forget_units
from orchestrator.runtime.loop_thread import BackendUnavailable
from orchestrator.store.queries import Job

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


@router.post("/{job_id}/requeue", status_code=202, response_model=RenderRequeued)
async def requeue(farm: FarmDep, job: JobDep, body: RequeueRequest) -> RenderRequeued:
    """Render frames of the job again: `frames` (done ones too: their files are replaced), or
    `failed` (every frame not done). A job that had ended is queued again with the frames it
    never rendered, so `{"failed": true}` resumes a cancelled job. Their attempts and the
    nodes they failed on start over; GET /render/ID lists each requeue under `requeues`."""
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


@router.post("/{job_id}/delete", response_model=RenderDeleted)
async def delete(farm: FarmDep, job: JobDep) -> RenderDeleted:
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
