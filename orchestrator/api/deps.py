"""What the routers depend on: the farm's state (made by the app's lifespan) and job lookups."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from farm_common.blobs import BlobStore
from farm_common.errors import BadRequest, Forbidden, NotFound, TooManyRequests
from farm_common.paths import JobId, check_job_id
from orchestrator.api.authorization import PrincipalDep
from orchestrator.runtime.links import Link
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import Job, Store


@dataclass
class Farm:
    settings: OrchestratorSettings
    store: Store
    link: Link  # the scheduler's side: on a thread of this process, or a process of its own
    clock: Callable[[], float]
    files: BlobStore  # the files of packed shots


def get_farm(request: Request) -> Farm:
    farm: Farm = request.app.state.farm
    return farm


FarmDep = Annotated[Farm, Depends(get_farm)]


def file_store(request: Request) -> BlobStore:
    """The farm's store of packed shots' files (for farm_common.blob_api)."""
    store: BlobStore = request.app.state.farm.files
    return store


def no_such_job(job_id: str) -> NotFound:
    return NotFound(f"no render job {job_id!r}: see GET /render for the list")


async def get_job(farm: FarmDep, job_id: JobId) -> Job:
    check_job_id(job_id)
    job = await farm.store.run(farm.store.get_job, job_id)
    if job is None:
        raise no_such_job(job_id)
    return job


JobDep = Annotated[Job, Depends(get_job)]


async def get_own_job(job: JobDep, who: PrincipalDep) -> Job:
    """The job, when the caller may act on it: it submitted it, or it is an admin."""
    if not who.owns(job.submitted_by):
        by = f"by {job.submitted_by!r}" if job.submitted_by else "before tokens had names"
        raise Forbidden(
            f"job {job.id} was submitted {by}: only they or an admin may cancel, requeue or "
            f"delete it (you are {who.name!r}, role {who.role})"
        )
    return job


OwnJobDep = Annotated[Job, Depends(get_own_job)]


async def check_after(farm: Farm, after: list[str]) -> None:
    """Every job a new job comes after is a job of this farm; 400 naming those that are not."""
    if not after:
        return
    known = await farm.store.run(farm.store.job_states, after)
    unknown = [j for j in after if j not in known]
    if unknown:
        raise BadRequest(
            f"after: no job {', '.join(unknown)} on this farm: give ids of its jobs (GET /render)"
        )


def too_many_jobs(limit: int) -> TooManyRequests:
    return TooManyRequests(
        f"the farm already has {limit} jobs queued or running (--max-queued-jobs): wait for "
        "some to finish, or cancel some (DELETE /render/ID)",
        headers={"Retry-After": "30"},
    )
