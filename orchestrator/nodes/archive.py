"""Reading a node's frames.tar: a pure incremental tar reader, and `FrameFiles`, which puts each
member in place as `_collect` does one frame (a .part file, renamed once complete).

Nothing from the archive becomes a path: a member counts only when its name is `frame_<n>.<ext>`
for a frame that was asked for, and it is written to the path we chose for that frame.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

BLOCK = 512
_NAME = re.compile(r"frame_(\d{1,7})(?:\.[A-Za-z0-9]{1,10})?")


class ArchiveError(ValueError):
    """The bytes are not a readable tar (bad header, truncated member)."""


@dataclass(frozen=True)
class Piece:
    """Part of a regular member's data; `first` and `last` mark its ends (both for a small one)."""

    name: str
    data: bytes
    first: bool
    last: bool


def member_frame(name: str) -> int | None:
    """The frame a member holds, from a name exactly like `frame_00003.png`; else None."""
    match = _NAME.fullmatch(name)
    return int(match.group(1)) if match else None


# Member types with data, as tarfile's TarInfo.isreg() counts them; GNU extension headers
# (long names, sparse maps) keep the ustar prefix field for other things.
_REGULAR = (b"0", b"\0", b"7", b"S")
_GNU = (b"L", b"K", b"S")


@dataclass(frozen=True)
class Header:
    name: str
    size: int
    regular: bool


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """A numeric field: octal text, or base-256 (GNU, e.g. sizes past 8 GiB)."""
    if field[0] in (0o200, 0o377):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0o377 else value
    try:
        return int(field.split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        raise ArchiveError(f"bad tar header: number field {field!r}") from None


def read_header(block: bytes) -> Header:
    """What TarReader needs of a 512-byte header (name, size, whether it holds a file), as
    tarfile.TarInfo.frombuf reads them, at a fifth of its cost: a job of 100,000 small frames
    has as many headers, all read on the scheduler's event loop."""
    if len(block) != BLOCK:
        raise ArchiveError("bad tar header: truncated")
    checksum = _number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 256  # the field itself counts as spaces
    # Some tars sum signed chars: each byte past 127 then counts 256 less.
    if checksum != unsigned and checksum != unsigned - 256 * sum(
        1 for b in block[:148] + block[156:] if b > 127
    ):
        raise ArchiveError("bad tar header: bad checksum")
    size = _number(block[124:136])
    if size < 0:
        raise ArchiveError(f"bad tar header: size {size}")
    name, kind = _text(block[0:100]), block[156:157]
    prefix = _text(block[345:500])
    if prefix and kind not in _GNU:
        name = f"{prefix}/{name}"
    # An old (V7) tar writes a folder as a file whose name ends with a slash.
    folder = kind == b"5" or (kind == b"\0" and name.endswith("/"))
    if folder:
        name = name.rstrip("/")
    return Header(name, size, kind in _REGULAR and not folder)


class TarReader:
    """Feed a tar stream in chunks of any size; get back the data of its regular members.

    Other members (folders, links, extended headers) are skipped. Everything after the
    end-of-archive marker is ignored.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._name = ""
        self._regular = False
        self._left = 0  # data bytes of the current member still to come
        self._pad = 0  # padding after it
        self._first = False
        self._in_member = False
        self._ended = False

    def feed(self, data: bytes) -> list[Piece]:
        if self._ended:
            return []
        self._buf += data
        pieces: list[Piece] = []
        pos = 0
        buf = self._buf
        while True:
            if self._in_member:
                if self._left:
                    take = min(self._left, len(buf) - pos)
                    if take == 0:
                        break
                    self._left -= take
                    if self._regular:
                        chunk = bytes(buf[pos : pos + take])
                        pieces.append(Piece(self._name, chunk, self._first, self._left == 0))
                        self._first = False
                    pos += take
                    continue
                skip = min(self._pad, len(buf) - pos)
                self._pad -= skip
                pos += skip
                if self._pad:
                    break
                self._in_member = False
            if len(buf) - pos < BLOCK:
                break
            block = bytes(buf[pos : pos + BLOCK])
            pos += BLOCK
            if block.count(0) == BLOCK:
                self._ended = True
                break
            info = read_header(block)
            self._name = info.name
            self._regular = info.regular
            self._left = info.size
            self._pad = -info.size % BLOCK
            self._first = True
            self._in_member = True
            if self._regular and info.size == 0:
                pieces.append(Piece(info.name, b"", True, True))
        del buf[:pos]
        return pieces

    def close(self) -> None:
        """The stream ended: complain if it stopped inside a member."""
        if self._in_member and (self._left or self._pad):
            raise ArchiveError(f"the archive ends inside {self._name!r}")
        if not self._ended and self._buf:
            raise ArchiveError("the archive ends inside a header")


class FrameFiles:
    """Puts archive members in place; blocking, so it runs on a worker thread.

    `targets` maps each frame asked for to its final path; `part(path)` names the temp file a
    member is written to before its atomic rename. A frame whose final file already exists (a
    crash after the rename, before the record) keeps that file. An empty member fails its frame.
    """

    def __init__(self, targets: Mapping[int, Path], part: Callable[[Path], Path]) -> None:
        self.targets = dict(targets)
        self.part = part
        self.placed: list[int] = []
        self.failed: dict[int, str] = {}
        self.ignored: list[str] = []  # members that are no frame asked for (or a repeat)
        self._taken: set[int] = set()
        self._current: tuple[int, BinaryIO] | None = None  # the member being written
        self._size = 0
        self._dirs: set[Path] = set()

    def write(self, pieces: Iterable[Piece]) -> None:
        for piece in pieces:
            if piece.first:
                self._start(piece.name)
            if self._current is None:
                continue
            self._current[1].write(piece.data)
            self._size += len(piece.data)
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

    def _finish(self) -> None:
        assert self._current is not None
        (frame, fh), self._current = self._current, None
        dest = self.targets[frame]
        tmp = self.part(dest)
        try:
            fh.close()
            if self._size == 0:
                self.failed[frame] = f"frame {frame} came empty from the node"
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
