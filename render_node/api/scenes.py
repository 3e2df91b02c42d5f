"""/scenes/{sha256}: uploads of .blend files, stored by their hash."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from farm_common.errors import PayloadTooLarge
from farm_common.paths import Sha256, check_sha256
from farm_common.protocol import SceneStored
from render_node.api.deps import NodeDep

router = APIRouter(prefix="/scenes")


@router.put("/{sha256}", status_code=201, response_model=SceneStored)
async def upload_scene(node: NodeDep, sha256: Sha256, request: Request) -> SceneStored:
    sha = check_sha256(sha256)
    store = node.store
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > store.max_bytes:
        # Refused before reading; without the header the bytes are counted as they come.
        raise PayloadTooLarge(
            f"upload of {int(declared) // (1024 * 1024)} MB is larger than this node's "
            f"limit of {store.max_bytes // (1024 * 1024)} MB (--max-upload-mb)"
        )
    size = await store.save(sha, request.stream())
    return SceneStored(scene=f"sha256:{sha}", size=size)


@router.head("/{sha256}")
async def has_scene(node: NodeDep, sha256: Sha256) -> Response:
    return Response(status_code=200 if await node.store.has(check_sha256(sha256)) else 404)
