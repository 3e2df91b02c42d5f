"""/render: submit a job, follow it, cancel it, and fetch its frames."""

from __future__ import annotations

import asyncio
import json
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from farm_common.blendfile import (
    SceneFormatError,
    opens,
    saved_by,
    scene_cycles,
    scene_denoises,
    scene_image_format,
    scene_resolution,
)
from farm_common.blobs import BlobStore
from farm_common.errors import (
    BadRequest,
    Conflict,
    NotFound,
    TooManyRequests,
    Unavailable,
    binary_response,
)
from farm_common.frames import MAX_FRAMES, FrameSpecError, parse_frame_spec
from farm_common.limits import RateLimiter
from farm_common.manifest import Manifest
from farm_common.paths import FrameNumber, JobId, TileNumber, check_job_id
from farm_common.protocol import CONTENT_TYPES, FrameState, image_format
from farm_common.tiles import DEFAULT_MARGIN, grid, tile_of
from orchestrator.api import views
from orchestrator.api.authorization import PrincipalDep
from orchestrator.api.deps import (
    FarmDep,
    JobDep,
    OwnJobDep,
    check_after,
    get_job,
    no_such_job,
    too_many_jobs,
)
from orchestrator.api.models import (
    FrameList,
    FrameMap,
    FrameTiles,
    RenderCreated,
    RenderDetail,
    RenderRequest,
    RenderSummary,
)
from orchestrator.dashboard.pages import framemap
from orchestrator.renders import (
    TILED_FORMATS,
    output_path,
    output_suffix,
    tile_format,
    tile_path,
    video_path,
)
from orchestrator.runtime.loop_thread import BackendUnavailable
from orchestrator.scheduling.batching import auto_batch_size
from orchestrator.scheduling.policy import blender_matches
from orchestrator.store.db import Job, Store
from orchestrator.store.scenes import job_scene_file, resolve_scene

JOBS_LISTED = 200


def check_blender_version(wanted: str, versions: dict[str, str | None]) -> None:
    """409 when the farm knows nodes but none of them runs the Blender a job asks for (a typo,
    or the wrong farm); a farm with no nodes yet takes the job, to wait for them."""
    known = [v for v in versions.values() if v]
    if not known or any(blender_matches(v, wanted) for v in known):
        return
    counts = ", ".join(f"{v} ({known.count(v)})" for v in sorted(set(known)))
    raise Conflict(
        f"no node runs Blender {wanted}: the nodes run {counts}. Ask for one of those "
        "versions, leave blender_version out to use any node, or start nodes with that Blender"
    )


async def check_manifest(
    manifest: Manifest, files: BlobStore
) -> tuple[str, str, Path, dict[str, Any]]:
    """A packed shot's name, main file's sha256 and stored path, and its files and bytes;
    409 naming the files the farm does not hold yet (upload them with PUT /files/SHA256)."""
    sizes = await asyncio.to_thread(files.sizes, manifest.files.values())
    lacking = [sha for sha, size in sizes.items() if size is None]
    if lacking:
        names = {sha: rel for rel, sha in manifest.files.items()}
        shown = ", ".join(names[sha] for sha in lacking[:10])
        more = f" and {len(lacking) - 10} more" if len(lacking) > 10 else ""
        raise Conflict(
            f"the farm does not hold {len(lacking)} file(s) of the shot: {shown}{more}; upload "
            "each with PUT /files/SHA256 (farm render does), then submit again"
        )
    sha = manifest.files[manifest.main]
    assets = {"files": len(manifest.files), "bytes": sum(s or 0 for s in sizes.values())}
    return manifest.main, sha, files.path(sha), assets


def check_saved_by(saved: tuple[int, int] | None, versions: dict[str, str | None]) -> None:
    """409 when the farm knows nodes but every one runs a Blender older than the one that
    saved the scene (it cannot open it, or opens it wrong); a farm with no nodes yet takes the
    job, to wait for them. The job's batches go only to nodes that open it (scheduler)."""
    known = [v for v in versions.values() if v]
    if not known or any(opens(v, saved) for v in known):
        return
    assert saved is not None
    counts = ", ".join(f"{v} ({known.count(v)})" for v in sorted(set(known)))
    raise Conflict(
        f"the scene was saved by Blender {saved[0]}.{saved[1]}, newer than every node's "
        f"Blender: the nodes run {counts}. Start nodes with Blender {saved[0]}.{saved[1]} or "
        "later (render-node --blender bpy runs Blender 5), or save the scene with theirs"
    )


# The size of a scene's frames by the scene's sha256: its content, so it never changes. The
# dashboard asks for a tiled frame's regions every second: the .blend is read once.
_FRAME_SIZES: dict[str, tuple[int, int] | None] = {}
FRAME_SIZES_KEPT = 256


async def frame_size(job: Job, store: Store, files: BlobStore) -> tuple[int, int] | None:
    """The size of the job's frames, from its scene file (None when it cannot be read)."""
    if job.scene_sha not in _FRAME_SIZES:
        scene = await job_scene_file(job, store, files)
        size = None if scene is None else await asyncio.to_thread(scene_resolution, scene)
        if len(_FRAME_SIZES) >= FRAME_SIZES_KEPT:
            _FRAME_SIZES.pop(next(iter(_FRAME_SIZES)))
        _FRAME_SIZES[job.scene_sha] = size
    return _FRAME_SIZES[job.scene_sha]


def check_tiles(tiles: int, fmt: str, frames: int) -> None:
    """400 for a split the farm cannot stitch: a format it does not, or too many regions."""
    if tiles == 1:
        return
    if fmt not in TILED_FORMATS:
        raise BadRequest(
            f"frames split in tiles are stitched in {', '.join(TILED_FORMATS)}, and this job's "
            f"are {fmt}: ask for one of those (format), or leave tiles out"
        )
    if frames * tiles > MAX_FRAMES:
        raise BadRequest(
            f"{frames} frames of {tiles} tiles are {frames * tiles} regions to render, more than "
            f"the {MAX_FRAMES} a job holds: split the frames over several jobs, or use fewer tiles"
        )


async def check_split_samples(
    parts: int, tiles: int, fmt: str, scene: Path | None, frames: int
) -> int:
    """The frame's samples of a job split by samples; 400 for a split the farm cannot make:
    with tiles, a multilayer EXR, a scene not on Cycles, one that denoises, or too many
    parts."""
    if tiles > 1:
        raise BadRequest("split a frame in tiles or in samples, not both: leave one out")
    if fmt == "OPEN_EXR_MULTILAYER":
        raise BadRequest(
            "a frame split by samples is merged from its parts' Combined image alone, so a "
            "multilayer EXR would lose its passes: ask for OPEN_EXR or a display format, or "
            "split it in tiles"
        )
    if frames * parts > MAX_FRAMES:
        raise BadRequest(
            f"{frames} frames of {parts} parts are {frames * parts} parts to render, more than "
            f"the {MAX_FRAMES} a job holds: split the frames over several jobs, or use fewer parts"
        )
    cycles = None if scene is None else await asyncio.to_thread(scene_cycles, scene)
    if cycles is None:
        raise BadRequest(
            "a sample split needs the scene's render engine and samples, and they cannot be "
            "read from the file: render whole frames or split them in tiles"
        )
    if cycles.engine != "CYCLES":
        raise BadRequest(
            f"a sample split renders with Cycles, and the scene renders with {cycles.engine}: "
            "split it in tiles instead"
        )
    if cycles.denoises:
        raise BadRequest(
            "the scene denoises (Render Properties > Sampling > Denoise): a sample split merges "
            "parts rendered without denoising and does not denoise the merged frame, so it "
            "would come out noisy. Turn denoising off in the scene, or split the frame in tiles "
            "(they keep denoising, with a margin)"
        )
    if parts > cycles.samples:
        raise BadRequest(
            f"the scene renders {cycles.samples} samples: it splits in at most that many parts"
        )
    return cycles.samples


async def tile_margin(asked: int | None, scene: Path | None) -> int:
    """The margin a tiled job's regions are rendered with: as asked, else DEFAULT_MARGIN where
    the scene denoises. 400 when the scene's size, which a margin needs, cannot be read."""
    if asked is None:
        denoises = None if scene is None else await asyncio.to_thread(scene_denoises, scene)
        asked = DEFAULT_MARGIN if denoises else 0
    if asked and (scene is None or await asyncio.to_thread(scene_resolution, scene) is None):
        raise BadRequest(
            "tiles with a margin (tile_margin, or a scene that denoises) need the scene's "
            "resolution, and it cannot be read from the file: give tile_margin 0, or render "
            "whole frames"
        )
    return asked


async def job_format(asked: str | None, scene: Path | None) -> str:
    """The format asked for, else the one the scene's Output properties name (PNG when the
    file does not say); 400 for a scene that writes a movie."""
    if asked is not None:
        return image_format(asked).name
    if scene is None:
        return "PNG"
    try:
        own = await asyncio.to_thread(scene_image_format, scene)
    except SceneFormatError as exc:
        raise BadRequest(str(exc)) from None
    return own or "PNG"


def render_router(rate_limiter: RateLimiter | None) -> APIRouter:
    router = APIRouter(prefix="/render")

    @router.post("", status_code=202, response_model=RenderCreated)
    async def submit(
        request: Request, farm: FarmDep, body: RenderRequest, who: PrincipalDep
    ) -> RenderCreated:
        settings = farm.settings
        if rate_limiter is not None:
            client = request.client.host if request.client else "unknown"
            wait = rate_limiter.check(client)
            if wait > 0:
                raise TooManyRequests(
                    f"more than {settings.rate_limit:g} jobs a minute from {client} "
                    f"(--rate-limit): retry in {math.ceil(wait)} s",
                    headers={"Retry-After": str(math.ceil(wait))},
                )
        try:
            frames = parse_frame_spec(body.frames)
        except FrameSpecError as exc:
            raise BadRequest(str(exc)) from exc
        assets: dict[str, Any] | None = None
        main: Path | None
        if body.manifest is not None:
            scene, sha, main, assets = await check_manifest(body.manifest, farm.files)
        else:
            assert body.scene is not None  # RenderRequest holds one or the other
            scene = body.scene
            sha = await resolve_scene(body.scene, farm.store, settings.scenes_dir)
            main = await farm.store.run(farm.store.scene_path, sha)
        if body.asset_warnings:
            assets = {"files": 0, "bytes": 0, **(assets or {}), "warnings": body.asset_warnings}
        fmt = await job_format(body.format, main)
        saved = None if main is None else await asyncio.to_thread(saved_by, main)
        facts = await farm.link.facts()
        versions = facts.blender_versions
        if body.blender_version:
            check_blender_version(body.blender_version, versions)
            pinned = body.blender_version
            versions = {u: v for u, v in versions.items() if v and blender_matches(v, pinned)}
        check_saved_by(saved, versions)
        check_tiles(body.tiles, fmt, len(frames))
        margin = 0 if body.tiles == 1 else await tile_margin(body.tile_margin, main)
        parts, samples = body.split_samples, None
        if parts > 1:
            samples = await check_split_samples(parts, body.tiles, fmt, main, len(frames))
        # A batch is one region (or sample part) of up to `size` frames.
        size = body.batch_size or auto_batch_size(
            len(frames) * body.tiles * parts, facts.total_slots, settings.max_batch_size
        )

        await check_after(farm, body.after)

        def create() -> Any:
            # Counted and created in one go on the store's thread: no race past the limit.
            if farm.store.count_unfinished_jobs() >= settings.max_queued_jobs:
                return None
            return farm.store.create_job(
                scene=scene, scene_sha=sha, frames_spec=body.frames, frames=frames,
                fmt=fmt, priority=body.priority, batch_size=size, video=body.video,
                now=farm.clock(), adaptive=body.batch_size is None,
                blender_version=body.blender_version, device=body.device,
                saved_by=None if saved is None else f"{saved[0]}.{saved[1]}",
                manifest=body.manifest.model_dump_json() if body.manifest else None,
                format_given=body.format is not None, allow_missing=body.allow_missing,
                assets=json.dumps(assets) if assets else None, tiles=body.tiles,
                tile_margin=margin, sample_parts=parts, samples=samples, tags=body.tags,
                after=body.after, submitted_by=who.name,
            )  # fmt: skip

        created = await farm.store.run(create)
        if created is None:
            raise too_many_jobs(settings.max_queued_jobs)
        job, batches = created
        try:
            await farm.link.enqueue(job, batches)
        except BackendUnavailable as exc:
            raise Unavailable(
                f"job {job.id} is saved, but the scheduler did not confirm it ({exc}): see "
                f"GET /render/{job.id} before submitting it again; restarting the orchestrator "
                "queues it for sure",
                headers={"Retry-After": "5"},
            ) from None
        return RenderCreated(
            id=job.id,
            status_url=f"/render/{job.id}",
            state=job.state,
            frames=len(frames),
            batch_size=size,
            tiles=body.tiles,
            split_samples=parts,
        )

    @router.get("", response_model=list[RenderSummary])
    async def list_jobs(farm: FarmDep) -> list[dict[str, Any]]:
        def read(store: Store) -> list[tuple[Job, dict[str, int] | None]]:
            jobs = store.list_jobs(JOBS_LISTED)
            return [(j, store.tiled_counts(j.id, j.pieces) if j.pieces > 1 else None) for j in jobs]

        now = farm.clock()
        return [views.job_summary(j, now, tiled) for j, tiled in await farm.store.read(read)]

    @router.get("/{job_id}", responses={200: {"model": RenderDetail}})
    async def job_status(farm: FarmDep, job_id: JobId) -> Response:
        check_job_id(job_id)

        # One read, on the reader connection: status polls never wait behind frame writes.
        def read(store: Store) -> Any:
            found = store.job_view(job_id)
            if found is None:
                return None, None, ([], {})
            job = found[0]
            tiled = store.tiled_counts(job_id, job.pieces) if job.pieces > 1 else None
            after = store.job_states(job.after_ids) if job.after_ids else {}
            return found, tiled, (store.requeue_history(job_id), after)

        found, tiled, (requeues, after) = await farm.store.read(read)
        if found is None:
            raise no_such_job(job_id)
        job, batches_json, nodes, failed = found
        facts = await farm.link.facts()
        detail = views.job_detail(job, farm.clock(), nodes, failed, facts.blender_versions, tiled)
        detail["requeues"] = requeues
        detail["waiting"] = views.waiting(job, facts.tags, after)
        renders = farm.settings.renders_dir
        detail["video_requested"] = bool(job.video)
        detail["video"] = video_path(renders, job_id).is_file()
        if detail["video"]:
            detail["video_url"] = f"/render/{job_id}/video.mp4"
        # Built here, not through the response model: validating and encoding every batch of
        # a 100,000-frame job again costs most of the request (benchmarks/scale.py). A test
        # holds this body against RenderDetail.
        return Response(views.job_detail_body(detail, batches_json), media_type="application/json")

    @router.delete("/{job_id}", response_model=RenderSummary)
    async def cancel(farm: FarmDep, job: OwnJobDep) -> dict[str, Any]:
        await farm.link.cancel(job.id)
        after = await farm.store.run(farm.store.get_job, job.id) or job
        tiled = None
        if after.pieces > 1:
            tiled = await farm.store.run(farm.store.tiled_counts, after.id, after.pieces)
        return views.job_summary(after, farm.clock(), tiled)

    @router.get(
        "/{job_id}/frames/{frame}",
        response_class=FileResponse,
        responses={200: binary_response("a collected frame", sorted(set(CONTENT_TYPES.values())))},
    )
    async def frame_file(farm: FarmDep, job_id: JobId, frame: FrameNumber) -> FileResponse:
        # Looked up here, not as a dependency: a bad frame number is a 422 whatever the job.
        job = await get_job(farm, job_id)
        state = await farm.store.run(farm.store.frame_state, job.id, frame, job.pieces)
        if state is None:
            raise NotFound(f"frame {frame} is not part of job {job.id} ({job.frames_spec})")
        suffix = output_suffix(job.format)
        path = output_path(farm.settings.renders_dir, job.id, frame, suffix)
        if state != FrameState.DONE or not path.is_file():
            raise NotFound(f"frame {frame} of job {job.id} is not collected yet (it is {state})")
        media_type = CONTENT_TYPES.get(suffix, "application/octet-stream")
        return FileResponse(path, media_type=media_type, filename=path.name)

    @router.get(
        "/{job_id}/frames/{frame}/tiles",
        response_model=FrameTiles,
        response_model_exclude_none=True,
    )
    async def frame_tiles(farm: FarmDep, job_id: JobId, frame: FrameNumber) -> dict[str, Any]:
        """A tiled job's frame region by region (the dashboard draws it filling in)."""
        job = await get_job(farm, job_id)
        if job.tiles == 1:
            raise NotFound(f"job {job.id} renders whole frames: it has no tiles")
        state, tiles = await farm.store.run(farm.store.frame_tiles, job.id, frame, job.tiles)
        if state is None:
            raise NotFound(f"frame {frame} is not part of job {job.id} ({job.frames_spec})")
        cols, rows = grid(job.tiles)
        for entry in tiles:
            entry["col"], entry["row"] = tile_of(cols, rows, entry["tile"])
        answer: dict[str, Any] = {"frame": frame, "state": state, "cols": cols, "rows": rows}
        size = await frame_size(job, farm.store, farm.files)
        if size is not None:
            answer["width"], answer["height"] = size
        return {**answer, "tiles": tiles}

    @router.get(
        "/{job_id}/frames/{frame}/tiles/{tile}",
        response_class=FileResponse,
        responses={
            200: binary_response("a region waiting for the rest of its frame", ["image/png"])
        },
    )
    async def tile_file(
        farm: FarmDep, job_id: JobId, frame: FrameNumber, tile: TileNumber
    ) -> FileResponse:
        job = await get_job(farm, job_id)
        if tile >= job.tiles:
            raise NotFound(f"job {job.id} splits frames in {job.tiles} tiles: no tile {tile}")
        suffix = output_suffix(tile_format(job.format))
        path = tile_path(farm.settings.renders_dir, job.id, frame, tile, suffix)
        if not path.is_file():
            state = await farm.store.run(farm.store.frame_state, job.id, frame, job.tiles)
            why = "stitched: get the frame" if state == FrameState.DONE else "not collected"
            raise NotFound(f"tile {tile} of frame {frame} of job {job.id} is {why}")
        return FileResponse(path, media_type=CONTENT_TYPES.get(suffix, "application/octet-stream"))

    @router.get("/{job_id}/frames", response_model=FrameList, response_model_exclude_none=True)
    async def frame_states(farm: FarmDep, job: JobDep, state: str | None = None) -> FrameList:
        """Per-frame states (pending|rendering|done|failed), optionally one state only."""
        if state is not None and state not in set(FrameState):
            raise BadRequest(f"state {state!r}: use {', '.join(FrameState)}")
        piece = "part" if job.sample_parts > 1 else "region"
        frames = await farm.store.run(farm.store.frame_list, job.id, state, job.pieces, piece)
        return FrameList.model_validate({"id": job.id, "frames": views.as_parts(frames, job)})

    @router.get(
        "/{job_id}/frames.zip",
        response_class=StreamingResponse,
        responses={200: binary_response("every collected frame", ["application/zip"])},
    )
    async def frames_zip(farm: FarmDep, job: JobDep) -> StreamingResponse:
        frames = await farm.store.run(farm.store.done_frames, job.id, job.pieces)
        suffix = output_suffix(job.format)
        paths = [output_path(farm.settings.renders_dir, job.id, f, suffix) for f in frames]
        return StreamingResponse(
            _zip_stream(paths),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{job.id}-frames.zip"'},
        )

    @router.get("/{job_id}/framemap", response_model=FrameMap, response_model_exclude_none=True)
    async def frame_map(farm: FarmDep, job: JobDep) -> dict[str, Any]:
        """Every frame's state in one compact string (for the dashboard's frame grid)."""
        frames, states = await farm.store.run(farm.store.frame_states, job.id, job.pieces)
        return framemap(frames, states)

    @router.get(
        "/{job_id}/video.mp4",
        response_class=FileResponse,
        responses={200: binary_response("the preview video", ["video/mp4"])},
    )
    async def video(farm: FarmDep, job: JobDep) -> FileResponse:
        path = video_path(farm.settings.renders_dir, job.id)
        if not path.is_file():
            why = 'it was not asked for ("video": true)' if not job.video else "it is not ready"
            raise NotFound(f"no preview video for job {job.id}: {why}")
        return FileResponse(path, media_type="video/mp4", filename=f"{job.id}.mp4")

    return router


class _Pipe:
    """A write-only file for ZipFile that hands out what was written (zip streams unseekable)."""

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.pos = 0

    def write(self, data: bytes) -> int:
        self.chunks.append(bytes(data))
        self.pos += len(data)
        return len(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.chunks)
        self.chunks.clear()
        return data


def _zip_stream(paths: list[Path]) -> Iterator[bytes]:
    # Sync generator: Starlette runs it in a thread, so file reads stay off the event loop.
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", zipfile.ZIP_STORED) as zf:  # type: ignore[call-overload]
        for path in paths:
            if path.is_file():
                zf.write(path, path.name)
                yield pipe.take()
    yield pipe.take()
