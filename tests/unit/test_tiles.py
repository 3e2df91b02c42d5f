"""A frame cut into a grid of regions: the grid, each region's border, their numbering."""

from __future__ import annotations

import struct

import pytest
from pydantic import ValidationError

from farm_common.protocol import JobRequest, Tile
from farm_common.tiles import MAX_TILES, border, grid, tile_index, tile_of


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
