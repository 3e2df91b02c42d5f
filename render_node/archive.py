"""frames.tar: a job's finished frames as one uncompressed tar, streamed file by file.

The orchestrator collects every frame a poll found done in one request instead of one each.
The tar is written by hand (512-byte headers, data, padding) so it streams: no member and no
archive is ever held whole in memory, and its length is known before the first byte.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 512
END = b"\0" * (2 * BLOCK)  # end-of-archive marker: two zero blocks
CHUNK = 1 << 20


@dataclass(frozen=True)
class Member:
    name: str
    path: Path
    size: int
    mtime: float


def tar_header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    # GNU format: sizes past ustar's 8 GiB are written in base-256 instead of failing.
    return info.tobuf(format=tarfile.GNU_FORMAT, encoding="utf-8", errors="strict")


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def archive_size(members: Sequence[Member]) -> int:
    """The exact length of the stream `stream_archive(members)` yields."""
    return sum(
        len(tar_header(m.name, m.size, m.mtime)) + m.size + len(padding(m.size)) for m in members
    ) + len(END)


def stat_members(files: Sequence[tuple[str, Path]]) -> list[Member]:
    """Blocking: the members that are readable files now (a vanished file is left out)."""
    members = []
    for name, path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        if path.is_file():
            members.append(Member(name, path, st.st_size, st.st_mtime))
    return members


def _open_member(member: Member) -> tuple[BinaryIO, bytes]:
    """Blocking: open a member's file and read its first chunk (for a small frame, all of it)."""
    fh = member.path.open("rb")
    try:
        return fh, fh.read(min(member.size, CHUNK))
    except BaseException:
        fh.close()
        raise


async def stream_archive(members: Sequence[Member]) -> AsyncIterator[bytes]:
    """The tar of `members`, chunk by chunk, files read off the event loop.

    A file that changed size since `stat_members` aborts the stream (the length was promised):
    the client sees a truncated answer, never a silently wrong member.
    """
    for member in members:
        yield tar_header(member.name, member.size, member.mtime)
        fh, data = await asyncio.to_thread(_open_member, member)
        try:
            sent = len(data)
            yield data
            while sent < member.size:
                data = await asyncio.to_thread(fh.read, min(member.size - sent, CHUNK))
                if not data:
                    break
                sent += len(data)
                yield data
            if sent != member.size:
                raise OSError(f"{member.path} changed size while it was being sent")
        finally:
            fh.close()
        yield padding(member.size)
    yield END
