"""/jobs: batches of frames to render, their status, frames, frames.tar and log."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from farm_common.blendfile import SceneFormatError, saved_by, scene_image_format
from farm_common.errors import BadRequest, Conflict, ErrorBody, NotFound, binary_response
from farm_common.frames import FrameSpecError, compact_frames, parse_frame_spec
from farm_common.paths import FrameNumber, JobId
from farm_common.protocol import (
    ARCHIVE_MEDIA_TYPE,
    CONTENT_TYPES,
    MAX_ARCHIVE_FRAMES,
    MAX_WAIT_SECONDS,
    FrameState,
    ImageFormat,
    JobCreated,
    JobDeleted,
    JobDetail,
    JobList,
    JobRequest,
    frame_name,
    image_format,
)
from render_node.api.deps import NodeDep, get_job
from render_node.archive import archive_size, stat_members, stream_archive
from render_node.blender import version_refusal
from render_node.jobs import FINAL

router = APIRouter(prefix="/jobs")

WAIT_DOC = "with `since`: answer once the version differs from it, or after this many seconds"


@router.post("", status_code=202, response_model=JobCreated)
async def submit(node: NodeDep, body: JobRequest) -> JobCreated:
    try:
        frames = parse_frame_spec(body.frames)
    except FrameSpecError as exc:
        raise BadRequest(str(exc)) from None
    if body.develop is not None and set(body.develop) != set(frames):
        raise BadRequest("`develop` must name an image for each frame of `frames`, no more")
    if body.manifest is not None:
        node.files.check_complete(body.manifest)
        path = node.files.path(body.manifest.files[body.manifest.main])
        scene = f"{body.manifest.main} ({len(body.manifest.files)} files)"
    else:
        assert body.scene is not None  # JobRequest holds one or the other
        path = await node.store.resolve(body.scene)
        scene = body.scene
    fmt = await output_format(body.format, path, node.scene_formats)
    saved = await asyncio.to_thread(saved_by, path)
    refused = version_refusal(saved, await node.manager.blender_version())
    if body.manifest is not None:
        # Again, with no await before the job holds its files: another job's eviction may
        # have run while this one read the scene.
        node.files.check_complete(body.manifest)
    # Checked with no await before the job holds them, as the files of a manifest.
    develop = None
    if body.develop is not None:
        lacking = node.files.missing(body.develop.values())
        if lacking:
            raise NotFound(
                f"this node lacks {len(lacking)} image(s) to develop ({lacking[0][:12]}...): "
                "PUT /files/SHA256 each first"
            )
        develop = {frame: node.files.path(sha) for frame, sha in body.develop.items()}
    job = node.manager.submit(
        scene,
        path,
        frames,
        fmt,
        set_format=body.format is not None,
        allow_missing=body.allow_missing,
        manifest=body.manifest,
        lay_out=node.files.lay_out,
        refused=refused,
        session=body.session,
        border=None if body.tile is None else body.tile.border(),
        samples=None if (s := body.samples) is None else (s.start, s.count, s.total),
        develop=develop,
    )
    if body.manifest is not None:
        await asyncio.to_thread(node.files.evict)
    return JobCreated(
        id=job.id, state=job.state, status_url=f"/jobs/{job.id}", version=job.version()
    )


async def output_format(asked: str | None, scene: Path, known: dict[Any, str]) -> ImageFormat:
    """The format asked for, else the scene's own (PNG when the file does not say). Reading a
    big .blend takes a while: what a file said is kept in `known` while the file is unchanged."""
    if asked is not None:
        return image_format(asked)
    st = await asyncio.to_thread(scene.stat)
    key = (str(scene), st.st_size, st.st_mtime_ns, st.st_ino)
    if key not in known:
        try:
            own = await asyncio.to_thread(scene_image_format, scene)
        except SceneFormatError as exc:
            raise BadRequest(str(exc)) from None
        if len(known) >= 1000:
            known.clear()
        known[key] = own or "PNG"
    return image_format(known[key])


@router.get("", response_model=JobList, response_model_exclude_none=True)
async def list_jobs(node: NodeDep) -> dict[str, Any]:
    return {"jobs": [job.summary() for job in node.manager.jobs.values()]}


@router.get("/{job_id}", response_model=JobDetail, response_model_exclude_none=True)
async def job_status(
    node: NodeDep,
    job_id: JobId,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS, description=WAIT_DOC)] = 0,
    since: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    job = get_job(node, job_id)
    if since is not None and wait > 0:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await job.wait_for_change(since)
    return job.detail()


@router.delete("/{job_id}", response_model=JobDeleted)
async def delete_job(node: NodeDep, job_id: JobId) -> JobDeleted:
    """Cancel a queued or running job (Blender gone within 2 s); remove a finished one."""
    job = get_job(node, job_id)
    if job.state not in FINAL:
        await node.manager.cancel(job)
        return JobDeleted(id=job.id, state=job.state, removed=False)
    await node.manager.remove(job)
    return JobDeleted(id=job.id, state=job.state, removed=True)


@router.get(
    "/{job_id}/frames/{frame}",
    response_class=FileResponse,
    responses={200: binary_response("the rendered frame", sorted(set(CONTENT_TYPES.values())))},
)
async def frame_image(node: NodeDep, job_id: JobId, frame: FrameNumber) -> FileResponse:
    job = get_job(node, job_id)
    record = job.batch.frames.get(frame)
    if record is None:
        raise NotFound(f"frame {frame} is not part of job {job.id}")
    path = job.frame_file(frame)
    if path is None or not path.is_file():
        raise NotFound(f"frame {frame} of job {job.id} is not rendered ({record.state})")
    return FileResponse(path, media_type=job.fmt.content_type, filename=path.name)


@router.get(
    "/{job_id}/frames.tar",
    response_class=StreamingResponse,
    responses={
        200: binary_response(
            "an uncompressed tar of the frames' images, named as on the node "
            "(protocol.frame_name); a done frame whose file cannot be read is left out",
            [ARCHIVE_MEDIA_TYPE],
        ),
        409: {"description": "a frame of the spec is not done (yet)", "model": ErrorBody},
    },
)
async def frames_archive(
    node: NodeDep,
    job_id: JobId,
    frames: str = Query(
        description=f"frame spec of done frames: '3-7,9'; at most {MAX_ARCHIVE_FRAMES}",
        examples=["1-3"],
        max_length=16 * MAX_ARCHIVE_FRAMES,
    ),
) -> StreamingResponse:
    """Several finished frames in one answer, streamed: what the orchestrator collects a
    poll's worth of frames with. 400 for a bad spec, more than the cap or frames that are
    not the job's; 409 when one is not done."""
    job = get_job(node, job_id)
    try:
        wanted = parse_frame_spec(frames)
    except FrameSpecError as exc:
        raise BadRequest(str(exc)) from None
    if len(wanted) > MAX_ARCHIVE_FRAMES:
        raise BadRequest(
            f"{len(wanted)} frames asked for: at most {MAX_ARCHIVE_FRAMES} per archive, "
            "ask in parts"
        )
    foreign = [f for f in wanted if f not in job.batch.frames]
    if foreign:
        raise BadRequest(f"frames {compact_frames(foreign)} are not part of job {job.id}")
    waiting = [f for f in wanted if job.batch.frames[f].state != FrameState.DONE]
    if waiting:
        raise Conflict(
            f"frames {compact_frames(waiting)} of job {job.id} are not done: ask for done "
            f"frames only (GET /jobs/{job.id} has each frame's state)"
        )
    files = [(f, job.frame_file(f)) for f in wanted]
    named = [(frame_name(f, path.suffix), path) for f, path in files if path is not None]
    members = await asyncio.to_thread(stat_members, named)
    return StreamingResponse(
        stream_archive(members),
        media_type=ARCHIVE_MEDIA_TYPE,
        headers={
            "Content-Length": str(archive_size(members)),
            "Content-Disposition": f'attachment; filename="{job.id}-frames.tar"',
        },
    )


@router.get("/{job_id}/log", response_class=PlainTextResponse)
async def job_log(node: NodeDep, job_id: JobId) -> PlainTextResponse:
    job = get_job(node, job_id)
    return PlainTextResponse("\n".join(job.log_tail) + "\n")
