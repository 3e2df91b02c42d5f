"""A frame put back together from its regions (farm_common/tiles.py), or from parts of its
Cycles samples (merge_samples), with OpenImageIO.

OpenImageIO reads and writes every format a node writes (PNG and TIFF of 8 and 16 bits, JPEG,
OpenEXR with any channels, Blender's multilayer ones included) in their own data types, so a
region's pixels reach the frame as they are: nothing is converted, premultiplied or
re-encoded on the way but by the final writer. The regions are placed by their own sizes
(columns by the width of their regions, rows by the height), and a region whose size or
channels disagree with its neighbours' fails the frame rather than giving a wrong image.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import OpenImageIO as oiio

from farm_common.tiles import Box, core_box, margin_box, tile_of

# Read PNG/TIFF alpha as it is stored (straight), not premultiplied: written back unchanged.
_AS_STORED = oiio.ImageSpec()
_AS_STORED.attribute("oiio:UnassociatedAlpha", 1)


class StitchError(Exception):
    """The regions do not make one frame; the message says which and why."""


class Stitched(NamedTuple):
    width: int
    height: int
    channels: tuple[str, ...]


def _read(path: Path) -> oiio.ImageBuf:
    """The image at `path`, its pixels read now: read lazily, a file gone in between would
    give whatever the cache holds instead of an error."""
    image = oiio.ImageBuf(str(path), 0, 0, _AS_STORED)
    if image.has_error or not image.initialized or not image.read(0, 0, force=True):
        raise StitchError(f"cannot read {path.name}: {image.geterror() or 'not an image'}")
    return image


def _cut(image: oiio.ImageBuf, key: tuple[int, int], rendered: Box, core: Box) -> oiio.ImageBuf:
    spec = image.spec()
    width, height = rendered.right - rendered.left, rendered.bottom - rendered.top
    if (spec.width, spec.height) != (width, height):
        raise StitchError(
            f"region {key} with its margin is {spec.width}x{spec.height}, the frame's pixels "
            f"make it {width}x{height}"
        )
    x, y = core.left - rendered.left, core.top - rendered.top
    roi = oiio.ROI(x, x + core.right - core.left, y, y + core.bottom - core.top, 0, 1)
    return oiio.ImageBufAlgo.cut(image, roi)


def stitch(
    regions: Mapping[tuple[int, int], Path],
    cols: int,
    rows: int,
    out: Path,
    *,
    size: tuple[int, int] | None = None,
    attributes: Mapping[str, Any] | None = None,
    margins: Mapping[tuple[int, int], tuple[Box, Box]] | None = None,
) -> Stitched:
    """Write to `out` the frame whose region (col, row) is `regions[col, row]` (row 0 at the
    top), in `out`'s format (by its extension) with the regions' data type, channels and
    metadata, plus `attributes` (e.g. {"Compression": "jpeg:90"}). `size`: the frame's width
    and height when known (blendfile.scene_resolution); regions that make another fail.
    `margins`: regions rendered with a margin, as (the pixels rendered, the region's own),
    both in the frame's pixels (tiles.margin_box): each is cut down to its own first."""
    lacking = [(c, r) for r in range(rows) for c in range(cols) if (c, r) not in regions]
    if lacking:
        raise StitchError(f"{len(lacking)} of {cols * rows} regions missing, first {lacking[0]}")
    images = {key: _read(path) for key, path in regions.items()}
    for key, (rendered, core) in (margins or {}).items():
        images[key] = _cut(images[key], key, rendered, core)
    first = images[0, 0].spec()
    widths = [images[c, 0].spec().width for c in range(cols)]
    heights = [images[0, r].spec().height for r in range(rows)]
    for (c, r), image in images.items():
        spec = image.spec()
        if (spec.width, spec.height) != (widths[c], heights[r]):
            raise StitchError(
                f"region ({c}, {r}) is {spec.width}x{spec.height}, its column and row make it "
                f"{widths[c]}x{heights[r]}"
            )
        if list(spec.channelnames) != list(first.channelnames) or spec.format != first.format:
            raise StitchError(
                f"region ({c}, {r}) has channels {list(spec.channelnames)} of {spec.format}, "
                f"region (0, 0) {list(first.channelnames)} of {first.format}"
            )
    width, height = sum(widths), sum(heights)
    if size is not None and (width, height) != tuple(size):
        raise StitchError(
            f"the regions make a {width}x{height} frame, the scene a {size[0]}x{size[1]} one"
        )
    spec = oiio.ImageSpec(first)
    if out.suffix.lower() in (".jpg", ".jpeg") and spec.nchannels > 3:
        # Blender writes RGBA scenes' JPEGs as RGB; the regions came as RGBA PNGs.
        images = {key: oiio.ImageBufAlgo.channels(buf, (0, 1, 2)) for key, buf in images.items()}
        spec = oiio.ImageSpec(images[0, 0].spec())
    spec.width, spec.height = width, height
    spec.full_width, spec.full_height = spec.width, spec.height
    spec.x = spec.y = spec.full_x = spec.full_y = 0
    for name, value in (attributes or {}).items():
        spec.attribute(name, value)
    frame = oiio.ImageBuf(spec)
    y = 0
    for r in range(rows):
        x = 0
        for c in range(cols):
            if not oiio.ImageBufAlgo.paste(frame, x, y, 0, 0, images[c, r]):
                raise StitchError(f"cannot place region ({c}, {r}): {frame.geterror()}")
            x += widths[c]
        y += heights[r]
    out.parent.mkdir(parents=True, exist_ok=True)
    if not frame.write(str(out)):
        raise StitchError(f"cannot write {out.name}: {frame.geterror()}")
    return Stitched(spec.width, spec.height, tuple(spec.channelnames))


def stitch_frame(
    regions: Mapping[int, Path],
    cols: int,
    rows: int,
    out: Path,
    *,
    size: tuple[int, int] | None = None,
    attributes: Mapping[str, Any] | None = None,
    margin: int = 0,
) -> Stitched | None:
    """Stitch a frame from its region files by region number (tiles.tile_index) when every one
    of them is on disk; None while some are not. The frame appears at `out` whole or not at
    all (written beside it, then renamed), and the regions' folder goes once it is there.
    `margin`: the regions were rendered with one (tiles.margin_box), in a frame of `size`."""
    if not all(path.is_file() for path in regions.values()):
        return None
    grid = {tile_of(cols, rows, index): path for index, path in regions.items()}
    margins = None
    if margin:
        if size is None:
            raise StitchError("regions with a margin need the frame's size to be cut down")
        margins = {}
        for col, row in grid:
            core = core_box(cols, rows, col, row, *size)
            margins[col, row] = (margin_box(core, margin, *size), core)
    part = out.with_name(f".{out.stem}.{uuid.uuid4().hex[:8]}{out.suffix}")
    try:
        done = stitch(grid, cols, rows, part, size=size, attributes=attributes, margins=margins)
        os.replace(part, out)
    finally:
        part.unlink(missing_ok=True)
    for folder in {path.parent for path in regions.values()}:
        remove_pieces(folder)
    return done


def remove_pieces(folder: Path) -> None:
    """Delete a finished frame's folder of pieces (regions, parts), and the job's folder of
    them once no frame waits in it."""
    shutil.rmtree(folder, ignore_errors=True)
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


def merge_samples(parts: Sequence[tuple[Path, int]], out: Path) -> Stitched:
    """Write to `out` (OpenEXR, 32-bit float) the frame whose Cycles samples the `parts` are:
    (a part's EXR, how many samples it holds), each rendered from its own sample offset with
    the same seed. Their mean weighted by samples, in linear float, is the render of all the
    samples (to float rounding: tests/integration/test_sample_parts_real.py)."""
    if not parts:
        raise StitchError("no parts to merge")
    images = [(_read(path), count) for path, count in parts]
    first = images[0][0].spec()
    for (image, _), (path, _) in zip(images, parts, strict=True):
        spec = image.spec()
        if (spec.width, spec.height, list(spec.channelnames)) != (
            first.width, first.height, list(first.channelnames)
        ):  # fmt: skip
            raise StitchError(
                f"{path.name} is {spec.width}x{spec.height} {list(spec.channelnames)}, the first "
                f"part {first.width}x{first.height} {list(first.channelnames)}"
            )
    total = sum(count for _, count in images)
    spec = oiio.ImageSpec(first.width, first.height, first.nchannels, "float")
    spec.channelnames = first.channelnames
    spec.attribute("compression", "zip")
    frame = oiio.ImageBuf(spec)
    for image, count in images:
        # frame += image x (count / total), in float whatever the parts were stored in
        if not oiio.ImageBufAlgo.mad(frame, image, count / total, frame):
            raise StitchError(f"cannot merge the parts: {frame.geterror()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if not frame.write(str(out), "float"):
        raise StitchError(f"cannot write {out.name}: {frame.geterror()}")
    return Stitched(spec.width, spec.height, tuple(spec.channelnames))
