"""/files: the HTTP face of a content-addressed file store, the same on both services.

The client sends the orchestrator the files of a packed shot it lacks; the orchestrator sends
each node the ones it lacks. `POST /files/missing` asks about many files in one request.
"""

import asyncio
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from farm_common.blobs import BlobStore
from farm_common.errors import PayloadTooLarge
from farm_common.limits import size_text
from farm_common.paths import Sha256, check_sha256
from farm_common.protocol import FilesMissing, FileStored, FilesWanted


def files_router(get_store: Callable[[Request], BlobStore]) -> APIRouter:
    router = APIRouter(prefix="/files")
    StoreDep = Annotated[BlobStore, Depends(get_store)]

    @router.put("/{sha256}", status_code=201, response_model=FileStored)
    async def upload_file(store: StoreDep, sha256: Sha256, request: Request) -> FileStored:
        """Store a file under the sha256 of its bytes (checked); sending it again is harmless."""
        sha = check_sha256(sha256)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > store.max_file_bytes:
            raise PayloadTooLarge(
                f"file of {size_text(int(declared))} is larger than the limit of "
                f"{size_text(store.max_file_bytes)} a file (--max-upload-mb)"
            )
        size, new = await store.save(sha, request.stream())
        return FileStored(sha256=sha, size=size, new=new)

    @router.head("/{sha256}")
    async def has_file(store: StoreDep, sha256: Sha256) -> Response:
        """200 when the store holds the file, 404 when it does not."""
        return Response(status_code=200 if store.has(check_sha256(sha256)) else 404)

    @router.post("/missing", response_model=FilesMissing)
    async def missing_files(store: StoreDep, body: FilesWanted) -> FilesMissing:
        """Which of these files the store does not hold (one request for a whole shot)."""
        wanted = [check_sha256(sha) for sha in body.files]
        return FilesMissing(missing=await asyncio.to_thread(store.missing, wanted))

    return router
