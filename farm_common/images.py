"""What an image file of each render format starts with: enough to tell a frame from anything
else a node might send under a frame's name (a playlist, a page, another format)."""

from __future__ import annotations

# Format name (protocol.FORMATS) -> the byte strings one of which a file of it starts with.
# TARGA has no signature at its start; it is taken on trust.
MAGIC: dict[str, tuple[bytes, ...]] = {
    "PNG": (b"\x89PNG\r\n\x1a\n",),
    "JPEG": (b"\xff\xd8\xff",),
    "JPEG2000": (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51"),
    "BMP": (b"BM",),
    "TIFF": (b"II*\x00", b"MM\x00*"),
    "OPEN_EXR": (b"\x76\x2f\x31\x01",),
    "OPEN_EXR_MULTILAYER": (b"\x76\x2f\x31\x01",),
    "HDR": (b"#?RADIANCE", b"#?RGBE"),
    "WEBP": (b"RIFF",),  # then four bytes of size, then WEBP
    "CINEON": (b"\x80\x2a\x5f\xd7", b"\xd7\x5f\x2a\x80"),
    "DPX": (b"SDPX", b"XPDS"),
    "IRIS": (b"\x01\xda",),
}
HEAD_BYTES = 16  # enough for every signature above


def image_problem(fmt: str, head: bytes) -> str | None:
    """None when `head` (a file's first bytes) starts an image of format `fmt`; else what the
    file is not."""
    signatures = MAGIC.get(fmt)
    if signatures is None:
        return None
    ok = any(head.startswith(s) for s in signatures)
    if ok and fmt == "WEBP":
        ok = head[8:12] == b"WEBP"
    return None if ok else f"not a {fmt} image (it starts {head[:8]!r})"
