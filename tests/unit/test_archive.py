"""frames.tar: the node's streamed tar writer and the orchestrator's incremental reader and
the way its members are put in place (names checked, .part then rename, empty ones failed)."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path

import pytest

from farm_common.protocol import frame_name
from orchestrator.nodes.archive import (
    ArchiveError,
    FrameFiles,
    Piece,
    TarReader,
    member_frame,
)
from render_node.archive import (
    BLOCK,
    CHUNK,
    Member,
    archive_size,
    stat_members,
    stream_archive,
)


def streamed(members: list[Member]) -> bytes:
    async def collect() -> bytes:
        return b"".join([chunk async for chunk in stream_archive(members)])

    return asyncio.run(collect())


def frame_files(tmp_path: Path, sizes: dict[int, int]) -> list[Member]:
    files = []
    for frame, size in sizes.items():
        path = tmp_path / "node" / f"render{frame}.png"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([frame % 251]) * size)
        files.append((frame_name(frame, ".png"), path))
    return stat_members(files)


def read_all(data: bytes, step: int) -> list[Piece]:
    reader = TarReader()
    pieces = []
    for i in range(0, len(data), step):
        pieces += reader.feed(data[i : i + step])
    reader.close()
    return pieces


def joined(pieces: list[Piece]) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for piece in pieces:
        assert piece.first == (piece.name not in out)
        out[piece.name] = out.get(piece.name, b"") + piece.data
    return out


def test_node_archive_is_a_tar_the_standard_library_reads_with_its_promised_length(
    tmp_path: Path,
) -> None:
    members = frame_files(tmp_path, {3: 100, 4: 512, 7: CHUNK + 5, 12: 1})
    data = streamed(members)
    assert len(data) == archive_size(members)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        assert names == ["frame_00003.png", "frame_00004.png", "frame_00007.png", "frame_00012.png"]
        member = tar.extractfile("frame_00007.png")
        assert member is not None and member.read() == bytes([7]) * (CHUNK + 5)


def test_a_frame_file_gone_before_the_archive_is_left_out(tmp_path: Path) -> None:
    gone = tmp_path / "missing.png"
    assert stat_members([("frame_00001.png", gone), ("frame_00002.png", tmp_path)]) == []


def test_a_file_that_shrinks_while_sent_breaks_the_stream_off(tmp_path: Path) -> None:
    (member,) = frame_files(tmp_path, {1: 3 * CHUNK})
    member.path.write_bytes(b"x" * 10)
    with pytest.raises(OSError, match="changed size"):
        streamed([member])


@pytest.mark.parametrize("step", [1, 100, 511, 512, 513, 4096, 1 << 30])
def test_reader_gives_every_member_whatever_the_chunking(tmp_path: Path, step: int) -> None:
    sizes = {1: 0, 2: 1, 3: 511, 4: 512, 5: 513, 6: 3000}
    if step == 1:
        sizes = {1: 0, 2: 1, 3: 600}  # byte by byte: keep it quick
    members = frame_files(tmp_path, sizes)
    got = joined(read_all(streamed(members), step))
    assert got == {frame_name(f, ".png"): bytes([f]) * size for f, size in sizes.items()}


def tar_of(*entries: tarfile.TarInfo | tuple[str, bytes], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                name, data = entry
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_reader_skips_folders_links_and_extended_headers() -> None:
    folder = tarfile.TarInfo("frames")
    folder.type = tarfile.DIRTYPE
    link = tarfile.TarInfo("frame_00002.png")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    data = tar_of(folder, link, ("x" * 150 + ".png", b"long name"), ("frame_00001.png", b"ok"))
    got = joined(read_all(data, 700))
    # The long name lives in a pax header, which is skipped: its member keeps the plain header's
    # cut name, which no frame name can be.
    assert sorted(got.values()) == [b"long name", b"ok"]
    assert got["frame_00001.png"] == b"ok" and "frame_00002.png" not in got


def test_reader_refuses_a_corrupt_header_and_a_truncated_member() -> None:
    data = bytearray(tar_of(("frame_00001.png", b"a" * 2000)))
    with pytest.raises(ArchiveError, match="ends inside"):
        read_all(bytes(data[:1500]), 512)
    data[148:156] = b"0000000\0"  # a wrong checksum
    with pytest.raises(ArchiveError, match="bad tar header"):
        read_all(bytes(data), 512)


def test_reader_ignores_what_follows_the_end_marker() -> None:
    data = tar_of(("frame_00001.png", b"a")) + b"garbage" * 100
    assert joined(read_all(data, 1000)) == {"frame_00001.png": b"a"}


@pytest.mark.parametrize(
    ("name", "frame"),
    [
        ("frame_00003.png", 3),
        ("frame_1048574.exr", 1048574),
        ("frame_123456.png", 123456),
        ("frame_00003", None),  # the node always gives a frame its extension
        ("frame_3.png", None),  # not the name the node gives frame 3
        ("frame_000003.png", None),
        ("frame_00003.png\n", None),
        ("../frame_00003.png", None),
        ("/tmp/frame_00003.png", None),
        ("out/frame_00003.png", None),
        ("frame_00003.png/../../x", None),
        ("frame_-1.png", None),
        ("frame_00003.png\x00", None),
        ("frame_00003..png", None),
        ("frame_.png", None),
        ("render_00003.png", None),
    ],
)
def test_member_frame_takes_only_plain_frame_names(name: str, frame: int | None) -> None:
    assert member_frame(name) == frame


def put(tmp_path: Path, frames: list[int], data: bytes, step: int = 512) -> FrameFiles:
    out = tmp_path / "renders" / "job1"
    files = FrameFiles(
        {f: out / frame_name(f, ".png") for f in frames}, lambda p: p.with_name(f".{p.name}.part")
    )
    files.write(read_all(data, step))
    return files


def test_members_go_only_to_the_paths_chosen_for_the_frames_asked_for(tmp_path: Path) -> None:
    data = tar_of(
        ("../../evil.png", b"evil"),
        ("/tmp/frame_00001.png", b"evil"),
        ("frame_00001.png", b"one"),
        ("frame_00001.png", b"again"),  # a repeat: the first one stands
        ("frame_00002.png", b""),  # empty: failed
        ("frame_00099.png", b"not asked for"),
    )
    files = put(tmp_path, [1, 2, 3], data)
    assert files.placed == [1]
    assert list(files.failed) == [2] and "empty" in files.failed[2]
    assert files.ignored == [
        "../../evil.png", "/tmp/frame_00001.png", "frame_00001.png", "frame_00099.png"
    ]  # fmt: skip
    found = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert found == ["renders/job1/frame_00001.png"]  # no part files, nothing elsewhere
    assert (tmp_path / "renders/job1/frame_00001.png").read_bytes() == b"one"


def test_a_frame_already_in_place_keeps_its_file(tmp_path: Path) -> None:
    dest = tmp_path / "renders" / "job1" / "frame_00001.png"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"first")
    files = put(tmp_path, [1], tar_of(("frame_00001.png", b"second")))
    assert files.placed == [1] and dest.read_bytes() == b"first"


def test_a_member_cut_off_leaves_no_part_file_once_discarded(tmp_path: Path) -> None:
    data = tar_of(("frame_00001.png", b"a" * 5000), ("frame_00002.png", b"b" * 5000))
    out = tmp_path / "renders" / "job1"
    files = FrameFiles(
        {f: out / frame_name(f, ".png") for f in (1, 2)}, lambda p: p.with_name(f".{p.name}.part")
    )
    reader = TarReader()
    files.write(reader.feed(data[:7000]))
    assert files.placed == [1] and (out / ".frame_00002.png.part").exists()
    files.discard()
    assert sorted(p.name for p in out.iterdir()) == ["frame_00001.png"]


def _info(
    name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = ""
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, size, link
    return info


def _with_checksum(block: bytearray, signed: bool = False) -> bytes:
    block[148:156] = b" " * 8
    total = sum(b - 256 if signed and b > 127 else b for b in block)
    block[148:156] = b"%06o\0 " % total
    return bytes(block)


# Each header, with what the reader gives for it: the member's name and size, or None when it
# is skipped.
HEADERS = {
    "gnu file": (
        _info("frame_00001.png", size=1234).tobuf(tarfile.GNU_FORMAT),
        ("frame_00001.png", 1234),
    ),
    "ustar file": (
        _info("frame_00002.exr", size=7).tobuf(tarfile.USTAR_FORMAT),
        ("frame_00002.exr", 7),
    ),
    "ustar name with a prefix": (
        _info("renders/" * 15 + "frame_00003.png", size=5).tobuf(tarfile.USTAR_FORMAT),
        ("renders/" * 15 + "frame_00003.png", 5),
    ),
    "empty file": (_info("frame_00004.png").tobuf(tarfile.GNU_FORMAT), ("frame_00004.png", 0)),
    "size past 8 GiB (base-256)": (
        _info("big.exr", size=10 << 30).tobuf(tarfile.GNU_FORMAT),
        ("big.exr", 10 << 30),
    ),
    "folder": (_info("frames", tarfile.DIRTYPE).tobuf(tarfile.GNU_FORMAT), None),
    "symlink": (
        _info("frame_00005.png", tarfile.SYMTYPE, link="/etc/passwd").tobuf(tarfile.GNU_FORMAT),
        None,
    ),
    "hard link": (
        _info("frame_00006.png", tarfile.LNKTYPE, link="frame_00001.png").tobuf(tarfile.GNU_FORMAT),
        None,
    ),
    "pax header": (_info("y" * 150 + ".png", size=3).tobuf(tarfile.PAX_FORMAT)[:512], None),
    "non-ASCII name": (
        _info("kadr_ü_00001.png", size=9).tobuf(tarfile.GNU_FORMAT),
        ("kadr_ü_00001.png", 9),
    ),
    "signed checksum": (
        _with_checksum(
            bytearray(_info("kadr_ü_00002.png", size=9).tobuf(tarfile.GNU_FORMAT)), signed=True
        ),
        ("kadr_ü_00002.png", 9),
    ),
    "old folder: a file whose name ends with /": (
        _with_checksum(bytearray(_info("frames/", tarfile.AREGTYPE).tobuf(tarfile.GNU_FORMAT))),
        None,
    ),
}
SHOWN = 600  # data fed after a header: all of a small member, the start of a big one


@pytest.mark.parametrize(("block", "member"), HEADERS.values(), ids=HEADERS.keys())
def test_reader_reads_each_kind_of_header(block: bytes, member: tuple[str, int] | None) -> None:
    size = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape").size
    pieces = TarReader().feed(block + b"d" * min(size, SHOWN))
    if member is None:
        assert pieces == []
        return
    name, size = member
    assert {p.name for p in pieces} == {name}
    assert b"".join(p.data for p in pieces) == b"d" * min(size, SHOWN)
    assert pieces[0].first and pieces[-1].last == (size <= SHOWN)


def _broken(what: str) -> bytes:
    block = bytearray(_info("frame_00001.png", size=10).tobuf(tarfile.GNU_FORMAT))
    if what == "checksum":
        block[0] ^= 1
        return bytes(block)
    if what == "size":
        block[124:136] = b"0000000001x\0"
    if what == "negative size":
        block[124:136] = b"\xff" * 12
    if what == "sparse":
        block[156:157] = tarfile.GNUTYPE_SPARSE
    if what == "long name past the bound":
        block = bytearray(_info("x" * 5000, size=10).tobuf(tarfile.GNU_FORMAT)[:512])
    return _with_checksum(block)


@pytest.mark.parametrize(
    ("what", "message"),
    [
        ("checksum", "bad checksum"),
        ("size", "invalid header"),
        ("negative size", "size -1"),
        ("sparse", "GNU sparse file"),
        ("long name past the bound", "a long name of 5001 bytes"),
    ],
)
def test_reader_refuses_a_broken_header(what: str, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        TarReader().feed(_broken(what) + b"\0" * 1024)


def test_reader_gives_the_members_before_a_corrupted_header_then_refuses_it() -> None:
    data = bytearray(tar_of(("frame_00001.png", b"a"), ("frame_00002.png", b"b")))
    data[1024 : 1024 + 15] = b"frame_00003.png"  # the second header, overwritten
    reader, pieces = TarReader(), []
    with pytest.raises(ArchiveError, match="bad checksum"):
        for i in range(0, len(data), BLOCK):
            pieces += reader.feed(bytes(data[i : i + BLOCK]))
    assert joined(pieces) == {"frame_00001.png": b"a"}


LONG = "renders/" * 20 + "frame_00001.png"  # past the 100 bytes of a header's name field


@pytest.mark.parametrize("step", [1, 100, 512, 1 << 20])
def test_reader_gives_a_gnu_long_name_to_the_member_after_it(tmp_path: Path, step: int) -> None:
    data = tar_of((LONG, b"long"), ("frame_00002.png", b"short"), fmt=tarfile.GNU_FORMAT)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == [LONG, "frame_00002.png"]
    assert joined(read_all(data, step)) == {LONG: b"long", "frame_00002.png": b"short"}
    files = put(tmp_path, [1, 2], data, step)
    assert files.placed == [2] and files.ignored == [LONG]  # the whole name is what is checked


def test_reader_keeps_the_first_of_two_gnu_long_names_as_tarfile_does() -> None:
    first = _info("a" * 150 + ".png", size=1).tobuf(tarfile.GNU_FORMAT)
    second = _info("b" * 150 + ".png", size=1).tobuf(tarfile.GNU_FORMAT)
    data = first[:1024] + second + b"x".ljust(BLOCK, b"\0") + b"\0" * 1024
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["a" * 150 + ".png"]
    assert joined(read_all(data, 512)) == {"a" * 150 + ".png": b"x"}


def test_reader_refuses_an_archive_that_ends_after_a_gnu_long_name() -> None:
    header = tar_of((LONG, b"long"), fmt=tarfile.GNU_FORMAT)[:1024]  # the name, no member
    with pytest.raises(ArchiveError, match="ends after a long name"):
        read_all(header, 512)
    with pytest.raises(ArchiveError, match="ends after a long name"):
        read_all(header + b"\0" * 1024, 512)
