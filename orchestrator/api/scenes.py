"""POST /scenes: a .blend upload, stored by its sha256."""

from __future__ import annotations

import logging

from fastapi import APIRouter, File, UploadFile

from orchestrator.api.deps import FarmDep
from orchestrator.api.models import SceneUploaded
from orchestrator.store.scenes import save_upload

log = logging.getLogger(__name__)
router = APIRouter()


@router.post("/scenes", status_code=201, response_model=SceneUploaded)
async def upload_scene(farm: FarmDep, file: UploadFile = File(...)) -> SceneUploaded:
    # An oversize body never gets here: BodyLimitMiddleware counts it as it streams in.
    settings = farm.settings
    sha = await save_upload(file, farm.store, settings.uploads_dir, settings.max_upload_mb << 20)
    log.info("scene sha256:%s uploaded (%r)", sha, file.filename)
    return SceneUploaded(scene=f"sha256:{sha}", name=file.filename)
