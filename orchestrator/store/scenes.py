"""Scene files: content-addressed uploads and named scenes under --scenes-dir."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import UploadFile

from farm_common.blobs import BlobStore, write_hashed
from farm_common.errors import NotFound, PayloadTooLarge, UnsupportedMedia
from farm_common.paths import check_sha256, scene_path
from farm_pack.tree import file_sha256
from orchestrator.store.db import Job, Store

CHUNK = 1 << 20
# Plain .blend files start with "BLENDER"; Blender also saves them gzip- or zstd-compressed.
MAGICS = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")


def looks_like_blend(head: bytes) -> bool:
    return head.startswith(MAGICS)


async def save_upload(upload: UploadFile, store: Store, folder: Path, max_bytes: int) -> str:
    """Stream an upload to a temp file while hashing; keep it as <sha>.blend. Returns the sha."""
    tmp = folder / f".upload-{os.getpid()}-{id(upload)}-{time.monotonic_ns()}.part"
    name = upload.filename or "upload"

    def check_head(head: bytes) -> None:
        if not looks_like_blend(head):
            raise UnsupportedMedia(
                f"{name} is not a .blend file (no BLENDER header, not gzip or zstd)"
            )

    async def chunks() -> AsyncIterator[bytes]:
        while chunk := await upload.read(CHUNK):
            yield chunk

    too_large = PayloadTooLarge(
        f"scene is larger than {max_bytes // (1 << 20)} MB (FARM_MAX_UPLOAD_MB)"
    )
    try:
        sha, size, head = await write_hashed(
            chunks(), tmp, max_bytes, too_large, check_head, len(MAGICS[0])
        )
        if size == 0:
            raise UnsupportedMedia("the uploaded file is empty: send a .blend in field 'file'")
        check_head(head)
        dest = folder / f"{sha}.blend"
        os.replace(tmp, dest)
        await store.run(store.add_scene, sha, dest, upload.filename, size, time.time())
        return sha
    finally:
        tmp.unlink(missing_ok=True)


def is_upload_ref(scene: str) -> bool:
    """A job's scene as "sha256:<hex>" (or the bare hex) of an upload, not a name under the
    scenes folder."""
    return scene.startswith("sha256:") or (len(scene) == 64 and not scene.endswith(".blend"))


async def resolve_scene(scene: str, store: Store, scenes_dir: Path) -> str:
    """Map "sha256:<hex>" or a name under scenes_dir to the scene's sha256.

    Named scenes are hashed (off the event loop and off the store thread): a node without the
    name in its own scenes folder is sent the file like an upload.
    """
    if is_upload_ref(scene):
        sha = check_sha256(scene)
        if await store.run(store.scene_path, sha) is None:
            raise NotFound(f"unknown scene sha256:{sha}: upload it first with POST /scenes")
        return sha
    path = scene_path(scenes_dir, scene)
    if not await asyncio.to_thread(path.is_file):
        raise NotFound(
            f"unknown scene {scene!r}: not in the scenes folder {scenes_dir};"
            " upload it with POST /scenes"
        )
    sha, size = await asyncio.to_thread(file_sha256, path, CHUNK)
    await store.run(store.add_scene, sha, path, scene, size, time.time())
    return sha


async def job_scene_file(job: Job, store: Store, files: BlobStore) -> Path | None:
    """The .blend a job renders, on the orchestrator: a packed shot's main file in the file
    store, else the scene stored under its hash; None when it is gone."""
    if job.manifest is not None:
        return files.path(job.scene_sha)
    return await store.run(store.scene_path, job.scene_sha)
