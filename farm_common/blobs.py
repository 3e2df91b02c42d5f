"""A content-addressed file store: each file kept once, under the sha256 of its bytes.

The orchestrator keeps the files of packed shots in one (clients upload what it lacks), and
each node keeps its own (the orchestrator pushes what the node lacks). A file is streamed to a
temp file while it is counted and hashed, and renamed into place only when its hash is the one
it was sent under: a file in the store is always whole and always what its name says.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from farm_common.errors import BadRequest, PayloadTooLarge
from farm_common.limits import size_text
from farm_common.paths import check_sha256

log = logging.getLogger(__name__)

PARTIAL_PREFIX = ".upload-"


class BlobStore:
    def __init__(self, root: Path, max_file_bytes: int) -> None:
        self.root = root
        self.max_file_bytes = max_file_bytes

    def path(self, sha: str) -> Path:
        sha = check_sha256(sha)
        return self.root / sha[:2] / sha

    def has(self, sha: str) -> bool:
        return self.path(sha).is_file()

    def missing(self, shas: Iterable[str]) -> list[str]:
        """The ones of `shas` the store does not hold, each once, in order."""
        return [sha for sha, size in self.sizes(shas).items() if size is None]

    def sizes(self, shas: Iterable[str]) -> dict[str, int | None]:
        """Each of `shas` once, in order, with its size; None for one the store lacks."""
        return {sha: self.size(sha) for sha in dict.fromkeys(shas)}

    def size(self, sha: str) -> int | None:
        try:
            st = self.path(sha).stat()
        except OSError:
            return None
        return st.st_size if stat.S_ISREG(st.st_mode) else None

    def remove_partial_uploads(self) -> int:
        """Delete temp files of uploads a previous run did not finish."""
        removed = 0
        for tmp in self.root.glob(f"{PARTIAL_PREFIX}*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
        return removed

    async def save(self, sha: str, chunks: AsyncIterator[bytes]) -> tuple[int, bool]:
        """Stream a file into the store; returns (its size, whether it was new). Idempotent: a
        file the store holds already is read and checked all the same, then dropped."""
        sha = check_sha256(sha)
        target = self.path(sha)
        await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
        tmp = self.root / f"{PARTIAL_PREFIX}{secrets.token_hex(8)}"
        try:
            too_large = PayloadTooLarge(
                f"file {sha[:12]} is larger than the limit of "
                f"{size_text(self.max_file_bytes)} a file (--max-upload-mb)"
            )
            actual, size, _ = await write_hashed(chunks, tmp, self.max_file_bytes, too_large)
            if actual != sha:
                raise BadRequest(
                    f"the body's sha256 is {actual}, not {sha}: send the file under the sha256 "
                    "of its bytes (sha256sum FILE)"
                )
            if await asyncio.to_thread(target.is_file):
                return size, False
            await asyncio.to_thread(tmp.chmod, 0o644)  # readable by Blender, written by none
            await asyncio.to_thread(os.replace, tmp, target)
        finally:
            with contextlib.suppress(OSError):
                await asyncio.shield(asyncio.to_thread(tmp.unlink, missing_ok=True))
        log.info("file %s stored (%d bytes)", sha[:12], size)
        return size, True


async def write_hashed(
    chunks: AsyncIterator[bytes],
    path: Path,
    limit: int,
    too_large: Exception,
    check_head: Callable[[bytes], None] | None = None,
    head_len: int = 0,
) -> tuple[str, int, bytes]:
    """Stream `chunks` into `path` (off the event loop), counting and hashing as they come;
    returns (sha256 hex, size, the first `head_len` bytes). Raises `too_large` as soon as the
    bytes pass `limit`, and whatever `check_head` raises once it has `head_len` bytes to judge."""
    digest = hashlib.sha256()
    size = 0
    head = b""
    fh = await asyncio.to_thread(path.open, "wb")
    try:
        async for chunk in chunks:
            if not chunk:
                continue
            size += len(chunk)
            if size > limit:  # counted, whatever Content-Length said
                raise too_large
            if len(head) < head_len:
                head += chunk[: head_len - len(head)]
                if len(head) >= head_len and check_head is not None:
                    check_head(head)
            await asyncio.to_thread(_write_and_hash, fh, digest, chunk)
    finally:
        await asyncio.to_thread(fh.close)
    return digest.hexdigest(), size, head


def _write_and_hash(fh: BinaryIO, digest: hashlib._Hash, chunk: bytes) -> None:
    digest.update(chunk)
    fh.write(chunk)
