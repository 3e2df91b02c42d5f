"""Scenes a job can name: uploaded ones, content-addressed under data_dir/scenes/<sha256>.blend,
and named ones under --scenes-dir. Uploads stream to disk, counted, hashed and checked.

A stored scene is used only while it is provably the file that was uploaded: its hash was
checked, and its size, inode and change time have not moved since (any write, rename or
`touch` changes the change time, which no one can set back). Otherwise it is hashed again, and
a file that no longer matches its name is deleted, so the orchestrator sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

from farm_common.blobs import write_hashed
from farm_common.errors import BadRequest, NotFound, PayloadTooLarge, UnsupportedMedia
from farm_common.paths import check_sha256, scene_path
from farm_pack.tree import file_sha256
from render_node.sandbox import private_folder

log = logging.getLogger(__name__)

# .blend files start with "BLENDER"; Blender also saves them gzip- (< 3.0) or zstd-compressed.
BLEND_MAGICS = (b"BLENDER", b"\x1f\x8b", b"\x28\xb5\x2f\xfd")
MAGIC_LEN = 7


def looks_like_blend(head: bytes) -> bool:
    return any(head.startswith(magic) for magic in BLEND_MAGICS)


Fingerprint = tuple[int, int, int, int]  # size, inode, device, change time (ns)


def fingerprint(path: Path) -> Fingerprint | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_ino, st.st_dev, st.st_ctime_ns)


class SceneStore:
    def __init__(self, root: Path, scenes_dir: Path, max_bytes: int) -> None:
        self.root = root
        self.scenes_dir = scenes_dir
        self.max_bytes = max_bytes
        self._verified: dict[str, Fingerprint] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def remove_partial_uploads(self) -> int:
        """Delete temp files of uploads a previous run of the node did not finish."""
        removed = 0
        for tmp in self.root.glob(".upload-*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
        return removed

    def path_for(self, sha: str) -> Path:
        return self.root / f"{check_sha256(sha)}.blend"

    async def has(self, sha: str) -> bool:
        """Whether the store holds the scene `sha`, intact."""
        return await self.intact(check_sha256(sha)) is not None

    async def intact(self, sha: str) -> Path | None:
        """The stored scene `sha` if it is the file that was uploaded; a file that no longer
        hashes to its name is deleted (so a HEAD says 404 and it is sent again)."""
        path = self.path_for(sha)
        async with self._locks.setdefault(sha, asyncio.Lock()):
            now = await asyncio.to_thread(fingerprint, path)
            if now is None:
                self._verified.pop(sha, None)
                return None
            if self._verified.get(sha) == now:
                return path
            actual = await asyncio.to_thread(_hash_file, path)
            if actual != sha:
                log.warning("scene %s changed on disk (its sha256 is now %s): deleted", sha, actual)
                self._verified.pop(sha, None)
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(path.unlink)
                return None
            self._verified[sha] = now
            return path

    async def resolve(self, ref: str) -> Path:
        """`sha256:<hex>` of an uploaded scene, or a .blend name under the scenes folder."""
        if ref.startswith("sha256:"):
            sha = check_sha256(ref)
            path = await self.intact(sha)
            if path is None:
                raise NotFound(
                    f"scene {ref[:80]} is not on this node: upload it first with PUT /scenes/{sha}"
                )
            return path
        path = scene_path(self.scenes_dir, ref)
        if not path.is_file():
            raise NotFound(
                f"no scene {ref[:80]!r} in {self.scenes_dir}: name a .blend file there "
                "(e.g. 'demo.blend') or upload one and use 'sha256:<hex>'"
            )
        return path

    async def save(self, sha: str, chunks: AsyncIterator[bytes]) -> int:
        """Stream an upload to a temp file, then verify and rename it into place."""
        target = self.path_for(sha)
        await asyncio.to_thread(private_folder, self.root)
        tmp = self.root / f".upload-{secrets.token_hex(8)}.tmp"
        try:
            too_large = PayloadTooLarge(
                f"upload is larger than this node's limit of "
                f"{self.max_bytes // (1024 * 1024)} MB (--max-upload-mb)"
            )
            actual, size, head = await write_hashed(
                chunks, tmp, self.max_bytes, too_large, _check_blend, MAGIC_LEN
            )
            if size == 0:
                raise BadRequest("empty upload: send the .blend file's bytes as the body")
            if not looks_like_blend(head):
                raise _not_blend()
            if actual != check_sha256(sha):
                raise BadRequest(
                    f"the body's sha256 is {actual}, not {check_sha256(sha)}: "
                    "hash the file you upload (sha256sum scene.blend)"
                )
            await asyncio.to_thread(tmp.chmod, 0o644)  # readable by Blender, written by none
            await asyncio.to_thread(os.replace, tmp, target)
            stored = await asyncio.to_thread(fingerprint, target)
            if stored is not None:
                self._verified[actual] = stored
        except BaseException:
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(tmp.unlink))
            raise
        log.info("scene %s stored (%d bytes)", target.stem, size)
        return size


def _hash_file(path: Path) -> str | None:
    try:
        return file_sha256(path)[0]
    except OSError:
        return None


def _check_blend(head: bytes) -> None:
    if not looks_like_blend(head):
        raise _not_blend()


def _not_blend() -> UnsupportedMedia:
    return UnsupportedMedia(
        "the body is not a .blend file (it must start with 'BLENDER', or be gzip or zstd "
        "compressed): upload the scene file itself"
    )
