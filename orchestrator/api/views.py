"""JSON views of jobs, shared by the API and the dashboard page."""

from __future__ import annotations

import json
from typing import Any

from farm_common.protocol import FINAL_JOB_STATES
from farm_common.tiles import grid
from orchestrator.scheduling.policy import eta_seconds
from orchestrator.store.db import Job

FAILED_FRAMES_SHOWN = 100


def _elapsed(job: Job, now: float) -> float | None:
    if job.started is None:
        return None
    end = job.finished if job.finished is not None else now
    return round(max(0.0, end - job.started), 3)


def job_summary(job: Job, now: float, tiled: dict[str, int] | None = None) -> dict[str, Any]:
    """What a job list shows: counters only, O(1) per job. A tiled job's counters count its
    frames' regions; `tiled` (Queries.tiled_counts) counts its frames."""
    elapsed = _elapsed(job, now)
    remaining = job.total - job.done - job.failed
    summary: dict[str, Any] = {
        "id": job.id,
        "state": job.state,
        "kind": job.kind,
        "submitted_by": job.submitted_by,
        "source": job.source,
        "fps": job.fps,
        "scene": job.scene,
        "scene_name": job.scene_name or job.scene,
        "frames_spec": job.frames_spec,
        "priority": job.priority,
        "format": job.format,
        "batch_size": job.batch_size,
        "blender_version": job.blender_version,
        "device": job.device,
        "tags": sorted(job.tag_set),
        "after": job.after_ids,
        "saved_by": job.saved_by,
        "frames": {
            "total": job.total,
            "done": job.done,
            "failed": job.failed,
            "rendering": job.rendering,
        },
        "progress": round(job.done / job.total, 4) if job.total else 1.0,  # by regions
        "created": job.created,
        "started": job.started,
        "finished": job.finished,
        "elapsed_seconds": elapsed,
        "status_url": f"/render/{job.id}",
    }
    if job.pieces > 1:
        # A split job: its pieces (regions or sample parts) counted as units, its frames whole.
        pieces = {"total": job.total, "done": job.done, "failed": job.failed,
                  "rendering": job.rendering}  # fmt: skip
        if job.tiles > 1:
            cols, rows = grid(job.tiles)
            summary["tiles"] = {"per_frame": job.tiles, "grid": [cols, rows],
                                "margin": job.tile_margin, **pieces}  # fmt: skip
        else:
            summary["samples"] = {"per_frame": job.sample_parts, "samples": job.samples,
                                  **pieces}  # fmt: skip
        summary["frames"] = {"total": job.frame_count, **(tiled or {})}
    if job.state not in FINAL_JOB_STATES and elapsed is not None:
        eta = eta_seconds(elapsed, job.done, remaining)
        if eta is not None:
            summary["eta_seconds"] = eta
    return summary


def job_detail(
    job: Job,
    now: float,
    nodes: dict[str, int],
    failed_frames: list[dict[str, Any]],
    blender_versions: dict[str, str | None],
    tiled: dict[str, int] | None = None,
) -> dict[str, Any]:
    """GET /render/{id} but its batches: the summary, frames per node and failed frames."""
    detail = job_summary(job, now, tiled)
    failed_frames = as_parts(failed_frames, job)
    detail["nodes"] = nodes
    detail["failed_frames"] = failed_frames[:FAILED_FRAMES_SHOWN]
    versions = {v for url, v in blender_versions.items() if v and url in nodes}
    detail["blender_versions"] = sorted(versions)
    detail["mixed_blender_versions"] = len(versions) > 1
    if job.assets:
        detail["assets"] = json.loads(job.assets)
    if job.is_video:
        detail["error"] = job.error
    elif job.failed:
        first = failed_frames[0] if failed_frames else {}
        where = f"frame {first.get('frame')}"
        if job.tiles > 1:
            where += f" region {first.get('tile')}"
        elif job.sample_parts > 1:
            where += f" part {first.get('part')}"
        failed = detail["frames"]["failed"]
        detail["error"] = f"{failed} frame(s) failed; first: {where}: {first.get('error')}"
    return detail


def waiting(
    job: Job, node_tags: dict[str, list[str]], after: dict[str, str] | None = None
) -> str | None:
    """Why no node takes the job's frames now, when none can: jobs it comes after that are
    not complete (`after`: their states), no node taking work at all (`node_tags`: those that
    do, with their tags), or none with the tags it asks for. None otherwise (or once the job
    is over)."""
    if job.state in FINAL_JOB_STATES:
        return None
    pending = [f"{j} ({state})" for j, state in (after or {}).items() if state != "completed"]
    if pending:
        return f"waiting for the jobs it comes after to complete: {', '.join(pending)}"
    if job.is_video:
        return None  # encoded on the orchestrator: no node needed
    if not node_tags:
        return (
            "waiting for a node: none takes work now (none registered yet, or each is lost, "
            "drained, paused or outside its active hours)"
        )
    wanted = job.tag_set
    if not wanted or any(wanted <= set(tags) for tags in node_tags.values()):
        return None
    names = ", ".join(sorted(wanted))
    return (
        f"waiting for a node with the tags {names}: no live node that takes work has them all "
        f"(start one with render-node --tags {','.join(sorted(wanted))}, or resume one)"
    )


def as_parts(entries: list[dict[str, Any]], job: Job) -> list[dict[str, Any]]:
    """The store's entries of a split job's frames (`tile`, `tiles`, `tiles_done`) as a job
    split by samples names them (`part`, `parts`, `parts_done`)."""
    if job.sample_parts == 1:
        return entries
    names = {"tile": "part", "tiles": "parts", "tiles_done": "parts_done"}
    return [{names.get(key, key): value for key, value in entry.items()} for entry in entries]


def job_detail_body(detail: dict[str, Any], batches_json: str) -> bytes:
    """The whole GET /render/{id} answer: `detail` with the batch list, already JSON text
    (Queries.job_view), added as it is. A 100,000-frame job has over a thousand batches:
    decoding them and encoding them again took longer than reading them."""
    head = json.dumps(detail, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return f'{head[:-1]},"batches":{batches_json}}}'.encode()
