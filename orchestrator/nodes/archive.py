"""Reading a node's frames.tar: a pure incremental tar reader, and `FrameFiles`, which puts each
member in place as `_collect` does one frame (a .part file, renamed once complete).

Nothing from the archive becomes a path: a member counts only when its name is the one
`protocol.frame_name` gives a frame that was asked for, and it is written to the path we chose.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from farm_common.images import HEAD_BYTES
from farm_common.protocol import frame_name, parse_frame_name

BLOCK = tarfile.BLOCKSIZE
# The node writes names as UTF-8; surrogateescape, tarfile's own default, never fails on a
# foreign name, which is then simply no frame name.
ENCODING, ERRORS = "utf-8", "surrogateescape"
# No real path is longer; the bound also keeps a frame number far below the 4,300 digits past
# which int() refuses a string, so no name can make parse_frame_name raise.
LONG_NAME_MAX = 4096
# Headers that describe the member after them: a GNU long name waits past them for that member.
_EXTENSIONS = (*tarfile.GNU_TYPES, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class ArchiveError(ValueError):
    """The bytes are not a readable tar (bad header, truncated member)."""


@dataclass(frozen=True)
class Piece:
    """Part of a regular member's data; `first` and `last` mark its ends (both for a small one)."""

    name: str
    data: bytes
    first: bool
    last: bool


class TarReader:
    """Feed a tar stream in chunks of any size; get back the data of its regular members.

    Headers are read by tarfile.TarInfo.frombuf; a GNU long name applies to the member after
    it, as tarfile applies it. Other members (folders, links, pax headers) are skipped over
    their data. Everything after the end-of-archive marker is ignored.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._name = ""
        self._regular = False
        self._long_name: bytearray | None = None  # a GNU long name header's data, as it comes
        self._collecting = False  # the current member's data is that long name
        self._left = 0  # data bytes of the current member still to come
        self._pad = 0  # padding after it
        self._first = False
        self._ended = False

    def feed(self, data: bytes) -> list[Piece]:
        if self._ended:
            return []
        self._buf += data
        pieces: list[Piece] = []
        pos = 0
        buf = self._buf
        while True:
            if self._left:
                take = min(self._left, len(buf) - pos)
                if take == 0:
                    break
                self._left -= take
                if self._regular:
                    chunk = bytes(buf[pos : pos + take])
                    pieces.append(Piece(self._name, chunk, self._first, self._left == 0))
                    self._first = False
                elif self._collecting:
                    assert self._long_name is not None
                    self._long_name += buf[pos : pos + take]
                pos += take
                continue
            if self._pad:
                skip = min(self._pad, len(buf) - pos)
                self._pad -= skip
                pos += skip
                if self._pad:
                    break
            if len(buf) - pos < BLOCK:
                break
            block = bytes(buf[pos : pos + BLOCK])
            pos += BLOCK
            self._start(block)
            if self._ended:
                break
            if self._regular and self._left == 0:
                pieces.append(Piece(self._name, b"", True, True))
        del buf[:pos]
        return pieces

    def _start(self, block: bytes) -> None:
        """Take in one header: the member whose data follows, or the end of the archive."""
        if block.count(0) == BLOCK:
            if self._long_name is not None:
                raise ArchiveError("the archive ends after a long name header")
            self._ended = True
            return
        try:
            info = tarfile.TarInfo.frombuf(block, ENCODING, ERRORS)
        except tarfile.HeaderError as exc:
            raise ArchiveError(f"bad tar header: {exc}") from None
        if info.size < 0:
            raise ArchiveError(f"bad tar header: size {info.size}")
        # Its sparse map can go on in blocks past the header and its data is not the file's:
        # reading it as a plain member would misread the rest of the stream.
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveError(f"unexpected member type: {info.name!r} is a GNU sparse file")
        self._collecting = info.type == tarfile.GNUTYPE_LONGNAME
        if self._collecting:
            if info.size > LONG_NAME_MAX:
                raise ArchiveError(f"bad tar header: a long name of {info.size} bytes")
            if self._long_name is not None:
                self._collecting = False  # tarfile keeps the first of two long names in a row
            else:
                self._long_name = bytearray()
        elif info.type not in _EXTENSIONS and self._long_name is not None:
            info.name = self._long_name.split(b"\0", 1)[0].decode(ENCODING, ERRORS)
            self._long_name = None
        self._name = info.name
        self._regular = info.isreg()
        self._left = info.size
        self._pad = -info.size % BLOCK
        self._first = True

    def close(self) -> None:
        """The stream ended: complain if it stopped inside a member."""
        if self._ended:
            return
        if self._left or self._pad:
            raise ArchiveError(f"the archive ends inside {self._name!r}")
        if self._buf:
            raise ArchiveError("the archive ends inside a header")
        if self._long_name is not None:
            raise ArchiveError("the archive ends after a long name header")


def member_frame(name: str) -> int | None:
    """The frame a member holds when its name is exactly the one the node gives it; else None."""
    parsed = parse_frame_name(name)
    if parsed is None or frame_name(*parsed) != name:
        return None
    return parsed[0]


class FrameFiles:
    """Puts archive members in place; blocking, so it runs on a worker thread.

    `targets` maps each frame asked for to its final path; `part(path)` names the temp file a
    member is written to before its atomic rename. A frame whose final file already exists (a
    crash after the rename, before the record) keeps that file.

    The node is not trusted: an empty member, one larger than `max_bytes`, or one whose first
    bytes `check` finds wrong (not an image of the job's format) fails its frame. A member past
    `max_bytes` also sets `stop`: the caller reads no further.
    """

    def __init__(
        self,
        targets: Mapping[int, Path],
        part: Callable[[Path], Path],
        *,
        max_bytes: int | None = None,
        check: Callable[[bytes], str | None] | None = None,
    ) -> None:
        self.targets = dict(targets)
        self.part = part
        self.max_bytes = max_bytes
        self.check = check
        self.placed: list[int] = []
        self.failed: dict[int, str] = {}
        self.ignored: list[str] = []  # members that are no frame asked for (or a repeat)
        self.stop: str | None = None  # why the rest of the archive is not worth reading
        self._taken: set[int] = set()
        self._current: tuple[int, BinaryIO] | None = None  # the member being written
        self._size = 0
        self._head = b""
        self._dirs: set[Path] = set()

    def write(self, pieces: Iterable[Piece]) -> None:
        for piece in pieces:
            if self.stop is not None:
                return
            if piece.first:
                self._start(piece.name)
            if self._current is None:
                continue
            frame = self._current[0]
            self._size += len(piece.data)
            if self.max_bytes is not None and self._size > self.max_bytes:
                self.discard()
                self.stop = self.failed[frame] = (
                    f"the node sent more than {self.max_bytes >> 20} MB for frame {frame}, the "
                    "orchestrator's limit (--max-frame-mb)"
                )
                return
            if len(self._head) < HEAD_BYTES:
                self._head += piece.data[: HEAD_BYTES - len(self._head)]
            self._current[1].write(piece.data)
            if piece.last:
                self._finish()

    def _start(self, name: str) -> None:
        self.discard()
        frame = member_frame(name)
        if frame is None or frame not in self.targets or frame in self._taken:
            self.ignored.append(name)
            return
        self._taken.add(frame)
        dest = self.targets[frame]
        if dest.exists():
            self.placed.append(frame)
            return
        if dest.parent not in self._dirs:
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._dirs.add(dest.parent)
        self._current = (frame, self.part(dest).open("wb"))
        self._size = 0
        self._head = b""

    def _finish(self) -> None:
        assert self._current is not None
        (frame, fh), self._current = self._current, None
        dest = self.targets[frame]
        tmp = self.part(dest)
        try:
            fh.close()
            problem = None if self.check is None else self.check(self._head)
            if self._size == 0:
                self.failed[frame] = f"frame {frame} came empty from the node"
            elif problem is not None:
                self.failed[frame] = f"the node sent a file for frame {frame} that is {problem}"
            else:
                os.replace(tmp, dest)
                self.placed.append(frame)
        finally:
            tmp.unlink(missing_ok=True)

    def discard(self) -> None:
        """Drop a member left half-written (the stream broke off): close and delete its part."""
        if self._current is not None:
            (frame, fh), self._current = self._current, None
            fh.close()
            self.part(self.targets[frame]).unlink(missing_ok=True)
