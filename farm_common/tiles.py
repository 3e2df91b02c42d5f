"""One frame as a grid of regions that nodes render apart and the orchestrator stitches. Pure.

A region is (col, row) of a grid, row 0 at the top as in the image file; to Blender it is a
render border with crop: fractions of the frame, x from the left and y from the bottom. Blender
turns each edge into a pixel as `int(fraction * width)`, the same computation for the right
edge of a region and the left edge of the next, so neighbouring regions share their edge pixel
for pixel and the grid covers the frame with no gap and no overlap, whatever the resolution:
nobody needs to know it to cut the frame. The stitcher places each region by the sizes of the
images it gets back.
"""

from __future__ import annotations

import math
from typing import NamedTuple

MAX_TILES = 256  # regions of one frame; more is a task per few pixels


class Border(NamedTuple):
    """Blender's render border: fractions of the frame's width and height."""

    min_x: float
    max_x: float
    min_y: float
    max_y: float


def grid(tiles: int) -> tuple[int, int]:
    """(columns, rows) for `tiles` regions: the squarest grid of exactly that many, wider
    than tall (16: 4x4, 12: 4x3, 8: 4x2, 7: 7x1)."""
    if not 1 <= tiles <= MAX_TILES:
        raise ValueError(f"tiles must be 1 to {MAX_TILES}, not {tiles}")
    rows = max(r for r in range(1, math.isqrt(tiles) + 1) if tiles % r == 0)
    return tiles // rows, rows


def _check_region(cols: int, rows: int, col: int, row: int) -> None:
    if not (0 <= col < cols and 0 <= row < rows):
        raise ValueError(f"no region ({col}, {row}) in a {cols}x{rows} grid")


def border(cols: int, rows: int, col: int, row: int) -> Border:
    """The border of region (`col`, `row`) of a `cols` x `rows` grid (row 0: the top)."""
    _check_region(cols, rows, col, row)
    up = rows - 1 - row  # Blender counts rows from the bottom
    return Border(col / cols, (col + 1) / cols, up / rows, (up + 1) / rows)


def tile_index(cols: int, col: int, row: int) -> int:
    """A region's number, 0 to cols x rows - 1: left to right, from the top row down."""
    return col + cols * row


def tile_of(cols: int, rows: int, index: int) -> tuple[int, int]:
    """(col, row) of region number `index` (see `tile_index`)."""
    if not 0 <= index < cols * rows:
        raise ValueError(f"no region {index} in a {cols}x{rows} grid")
    return index % cols, index // cols


# A tiled job's units of work: (frame, tile) in one integer, where the rest of the farm keeps
# frame numbers (the store's frames table, batches, the queue). Frames are below 2^21
# (frames.MAX_FRAME_NUMBER), so tile 0 is the frame itself and an untiled job's units are its
# frames.
TILE_SHIFT = 21
FRAME_MASK = (1 << TILE_SHIFT) - 1


def unit(frame: int, tile: int) -> int:
    """The unit of work rendering region number `tile` (see `tile_index`) of `frame`."""
    return tile << TILE_SHIFT | frame


def unit_frame(unit: int) -> int:
    return unit & FRAME_MASK


def unit_tile(unit: int) -> int:
    return unit >> TILE_SHIFT


def tiled_units(frames: list[int], tiles: int, chunk: int) -> list[int]:
    """The units of `frames` split in `tiles` regions (or sample parts), in the order they
    are queued: a chunk of `chunk` frames region by region, then the next chunk. Batches of
    `chunk` units are then one region of up to `chunk` frames each, and a frame's regions go
    out together."""
    if tiles == 1:
        return list(frames)
    return [
        unit(frame, tile)
        for start in range(0, len(frames), chunk)
        for tile in range(tiles)
        for frame in frames[start : start + chunk]
    ]


# A frame split by samples instead: part k of `parts` renders its share of the frame's
# samples, the units numbered as regions are (unit(frame, k)).
MAX_PARTS = MAX_TILES


def sample_range(part: int, parts: int, total: int) -> tuple[int, int]:
    """(start, count): the samples of part `part` of `parts` of a frame of `total` samples,
    in contiguous runs as even as whole samples allow."""
    if not 0 <= part < parts <= total:
        raise ValueError(f"no part {part} of {parts} of {total} samples")
    start = part * total // parts
    return start, (part + 1) * total // parts - start


# With a margin (a scene that denoises: the denoiser needs the pixels around a region, or its
# edges show), a region is rendered larger by `margin` pixels on every side inside the frame
# and cut back by the stitcher. Both must then know each region's pixels exactly, so the grid
# is split in whole pixels of the frame's known size (column c: c x width // cols onwards), and
# each edge is sent to Blender as the fraction of its pixel plus half a pixel: int(fraction x
# size) is that pixel, whatever the float rounding.
MAX_MARGIN = 256
DEFAULT_MARGIN = 32  # OpenImageDenoise's filters reach a few pixels; a compositor blur, its size


class Box(NamedTuple):
    """Pixels of a frame: columns left..right-1, rows top..bottom-1 (row 0 at the top)."""

    left: int
    top: int
    right: int
    bottom: int


def core_box(cols: int, rows: int, col: int, row: int, width: int, height: int) -> Box:
    """The pixels region (`col`, `row`) holds of a `width` x `height` frame, with a margin."""
    _check_region(cols, rows, col, row)
    return Box(
        col * width // cols, row * height // rows,
        (col + 1) * width // cols, (row + 1) * height // rows,
    )  # fmt: skip


def margin_box(core: Box, margin: int, width: int, height: int) -> Box:
    """`core` grown by `margin` pixels on each side, inside the frame: what is rendered."""
    return Box(
        max(0, core.left - margin), max(0, core.top - margin),
        min(width, core.right + margin), min(height, core.bottom + margin),
    )  # fmt: skip


def box_border(box: Box, width: int, height: int) -> Border:
    """The render border whose crop is exactly `box` (see MAX_MARGIN's note)."""

    def edge(pixel: int, size: int) -> float:
        return 0.0 if pixel == 0 else 1.0 if pixel == size else (pixel + 0.5) / size

    # Blender's y counts from the bottom.
    return Border(
        edge(box.left, width), edge(box.right, width),
        edge(height - box.bottom, height), edge(height - box.top, height),
    )  # fmt: skip
