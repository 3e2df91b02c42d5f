"""A frame cut into a grid of regions: the grid, each region's border, their numbering."""

from __future__ import annotations

import struct

import pytest
from pydantic import ValidationError

from farm_common.protocol import JobRequest, Tile
from farm_common.tiles import (
    MAX_TILES,
    Border,
    Box,
    border,
    core_box,
    grid,
    margin_box,
    sample_range,
    tile_index,
    tile_of,
)


@pytest.mark.parametrize(
    ("tiles", "expected"),
    [(1, (1, 1)), (4, (2, 2)), (9, (3, 3)), (16, (4, 4)), (12, (4, 3)), (8, (4, 2)), (7, (7, 1))],
)
def test_grid_is_the_squarest_of_exactly_that_many(tiles: int, expected: tuple[int, int]) -> None:
    assert grid(tiles) == expected


@pytest.mark.parametrize("tiles", [0, -1, MAX_TILES + 1])
def test_grid_refuses_what_is_no_grid(tiles: int) -> None:
    with pytest.raises(ValueError):
        grid(tiles)


def as_float32(value: float) -> float:
    """What Blender stores (render borders are C floats)."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


@pytest.mark.parametrize(("cols", "rows"), [(3, 3), (4, 4), (7, 1), (5, 3)])
@pytest.mark.parametrize("size", [(320, 240), (641, 479), (1920, 1080), (7, 5)])
def test_regions_cover_the_frame_with_no_gap_and_no_overlap(
    cols: int, rows: int, size: tuple[int, int]
) -> None:
    """Pixels as Blender makes them of a border: int(float32 fraction x size)."""
    width, height = size
    covered = [[0] * width for _ in range(height)]
    for row in range(rows):
        for col in range(cols):
            b = border(cols, rows, col, row)
            x0, x1 = (int(as_float32(f) * width) for f in (b.min_x, b.max_x))
            y0, y1 = (int(as_float32(f) * height) for f in (b.min_y, b.max_y))
            for y in range(y0, y1):
                for x in range(x0, x1):
                    covered[y][x] += 1
    assert all(count == 1 for line in covered for count in line)


def test_row_zero_is_the_top_of_the_frame() -> None:
    top, bottom = border(2, 2, 0, 0), border(2, 2, 1, 1)
    assert (top.min_x, top.max_x, top.min_y, top.max_y) == (0.0, 0.5, 0.5, 1.0)
    assert (bottom.min_x, bottom.max_x, bottom.min_y, bottom.max_y) == (0.5, 1.0, 0.0, 0.5)
    with pytest.raises(ValueError):
        border(2, 2, 2, 0)


def test_region_numbers_read_left_to_right_from_the_top() -> None:
    assert [tile_of(3, 2, i) for i in range(6)] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1),
    ]  # fmt: skip
    assert all(tile_index(3, *tile_of(3, 2, i)) == i for i in range(6))
    with pytest.raises(ValueError):
        tile_of(3, 2, 6)


def test_a_node_is_asked_for_one_region_inside_its_grid() -> None:
    tile = {"cols": 3, "rows": 2, "col": 2, "row": 1}
    request = JobRequest(scene="a.blend", frames="1", tile=tile)
    assert request.tile == Tile(cols=3, rows=2, col=2, row=1)
    for bad in (
        {"cols": 3, "rows": 2, "col": 3, "row": 0},
        {"cols": 3, "rows": 2, "col": 0, "row": 2},
        {"cols": 32, "rows": 32, "col": 0, "row": 0},
        {"cols": 0, "rows": 2, "col": 0, "row": 0},
    ):
        with pytest.raises(ValidationError):
            Tile(**bad)


def blender_pixels(edges: Border, width: int, height: int) -> Box:
    """What Blender crops a border to: each edge int(float32 fraction x size, in float32),
    y counted from the bottom; as a Box of the image (row 0 at the top)."""
    x0, x1 = (int(as_float32(as_float32(f) * width)) for f in (edges.min_x, edges.max_x))
    y0, y1 = (int(as_float32(as_float32(f) * height)) for f in (edges.min_y, edges.max_y))
    return Box(x0, height - y1, x1, height - y0)


@pytest.mark.parametrize(("cols", "rows"), [(3, 3), (4, 4), (7, 1), (5, 3)])
@pytest.mark.parametrize("size", [(320, 240), (641, 479), (1920, 1080), (7919, 4001)])
@pytest.mark.parametrize("margin", [1, 16, 32, 256])
def test_with_a_margin_blender_renders_exactly_the_pixels_the_stitcher_cuts(
    cols: int, rows: int, size: tuple[int, int], margin: int
) -> None:
    width, height = size
    cores = []
    for row in range(rows):
        for col in range(cols):
            tile = Tile(cols=cols, rows=rows, col=col, row=row, margin=margin, size=size)
            core = core_box(cols, rows, col, row, width, height)
            rendered = tile.box()
            assert rendered == margin_box(core, margin, width, height)
            assert blender_pixels(tile.border(), width, height) == rendered
            assert rendered.left == max(0, core.left - margin)  # margins stop at the frame
            assert rendered.bottom == min(height, core.bottom + margin)
            cores.append(core)
    # The regions' own pixels tile the frame: columns and rows meet, edge to edge.
    assert sum((c.right - c.left) * (c.bottom - c.top) for c in cores) == width * height
    assert {c.left for c in cores} | {width} == {c.right for c in cores} | {0}


def test_a_margin_without_the_frames_size_is_refused() -> None:
    with pytest.raises(ValidationError, match="needs the frame's size"):
        Tile(cols=2, rows=2, col=0, row=0, margin=8)
    assert Tile(cols=2, rows=2, col=0, row=0).box() is None  # no margin: the border's pixels


@pytest.mark.parametrize(("parts", "total"), [(2, 16), (3, 16), (4, 128), (7, 9), (5, 5)])
def test_sample_parts_cover_every_sample_once_in_even_runs(parts: int, total: int) -> None:
    ranges = [sample_range(k, parts, total) for k in range(parts)]
    covered = [s for start, count in ranges for s in range(start, start + count)]
    assert covered == list(range(total))
    counts = [count for _, count in ranges]
    assert max(counts) - min(counts) <= 1 and min(counts) >= 1


def test_no_sample_part_past_the_samples() -> None:
    for bad in ((4, 4, 16), (-1, 4, 16), (0, 17, 16)):
        with pytest.raises(ValueError, match="no part"):
            sample_range(*bad)
