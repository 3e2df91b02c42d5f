"""Regions of a frame stitched back into it, in the frame's own format, pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farm_common.tiles import core_box, margin_box
from orchestrator.stitch import StitchError, merge_samples, stitch, stitch_frame

# Uneven columns and rows, as Blender's int(fraction x size) makes of 101 x 77 in 3 x 2.
XS = (0, 33, 67, 101)
YS = (0, 38, 77)
BLENDER_LAYERS = ("ViewLayer.Combined.R", "ViewLayer.Combined.G", "ViewLayer.Combined.B",
                  "ViewLayer.Combined.A", "ViewLayer.Depth.Z")  # fmt: skip


def noise(channels: int, fmt: str, names: tuple[str, ...] | None = None) -> oiio.ImageBuf:
    spec = oiio.ImageSpec(XS[-1], YS[-1], channels, fmt)
    if names:
        spec.channelnames = names
    image = oiio.ImageBuf(spec)
    assert oiio.ImageBufAlgo.noise(image, "uniform", 0.0, 1.0, False, 7)
    if channels == 4 and fmt in ("uint8", "uint16"):  # straight alpha, some of it zero
        assert oiio.ImageBufAlgo.fill(image, (0, 0, 0, 0), roi=oiio.ROI(0, 10, 0, 10, 0, 1, 3, 4))
    return image


def cut_into_regions(image: oiio.ImageBuf, folder: Path, ext: str) -> dict[tuple[int, int], Path]:
    regions = {}
    for r in range(len(YS) - 1):
        for c in range(len(XS) - 1):
            piece = oiio.ImageBufAlgo.cut(image, oiio.ROI(XS[c], XS[c + 1], YS[r], YS[r + 1]))
            path = folder / f"r{c}_{r}{ext}"
            assert piece.write(str(path)), piece.geterror()
            regions[c, r] = path
    return regions


def read(path: Path) -> oiio.ImageBuf:
    config = oiio.ImageSpec()
    config.attribute("oiio:UnassociatedAlpha", 1)
    return oiio.ImageBuf(str(path), 0, 0, config)


@pytest.mark.parametrize(
    ("ext", "channels", "fmt", "names"),
    [
        (".png", 4, "uint8", None),
        (".png", 3, "uint16", None),
        (".tif", 4, "uint16", None),
        (".exr", 4, "half", None),
        (".exr", 5, "float", BLENDER_LAYERS),
    ],
)
def test_stitched_frame_is_the_whole_frame_pixel_for_pixel(
    tmp_path: Path, ext: str, channels: int, fmt: str, names: tuple[str, ...] | None
) -> None:
    whole = tmp_path / f"whole{ext}"
    assert noise(channels, fmt, names).write(str(whole))
    regions = cut_into_regions(read(whole), tmp_path, ext)

    result = stitch(regions, 3, 2, tmp_path / f"frame{ext}")

    assert (result.width, result.height) == (101, 77)
    ours, theirs = read(tmp_path / f"frame{ext}"), read(whole)
    assert ours.spec().format == theirs.spec().format
    assert list(ours.spec().channelnames) == list(theirs.spec().channelnames)
    comparison = oiio.ImageBufAlgo.compare(ours, theirs, 0.0, 0.0)
    assert comparison.nfail == 0 and comparison.maxerror == 0.0


def test_a_jpeg_frame_is_encoded_once_from_lossless_regions(tmp_path: Path) -> None:
    whole = noise(3, "uint8")
    regions = cut_into_regions(whole, tmp_path, ".png")
    result = stitch(regions, 3, 2, tmp_path / "frame.jpg", attributes={"Compression": "jpeg:95"})
    frame = read(tmp_path / "frame.jpg")
    assert (result.width, result.height) == (frame.spec().width, frame.spec().height) == (101, 77)
    assert frame.spec().format == "uint8"


def test_a_missing_region_fails_the_frame_naming_it(tmp_path: Path) -> None:
    regions = cut_into_regions(noise(3, "uint8"), tmp_path, ".png")
    del regions[2, 1]
    with pytest.raises(StitchError, match=r"1 of 6 regions missing, first \(2, 1\)"):
        stitch(regions, 3, 2, tmp_path / "frame.png")
    assert not (tmp_path / "frame.png").exists()


def test_a_region_of_the_wrong_size_or_channels_fails_the_frame(tmp_path: Path) -> None:
    regions = cut_into_regions(noise(3, "uint8"), tmp_path, ".png")
    wrong = oiio.ImageBufAlgo.cut(read(regions[1, 1]), oiio.ROI(0, 30, 0, 39))
    assert wrong.write(str(regions[1, 1]))
    with pytest.raises(StitchError, match=r"region \(1, 1\) is 30x39, its column and row"):
        stitch(regions, 3, 2, tmp_path / "frame.png")

    regions = cut_into_regions(noise(3, "uint8"), tmp_path, ".png")
    assert noise(4, "uint8").write(str(tmp_path / "rgba.png"))
    regions[2, 0] = tmp_path / "rgba.png"
    with pytest.raises(StitchError):
        stitch(regions, 3, 2, tmp_path / "frame.png")


def test_regions_that_make_another_size_than_the_scenes_fail_the_frame(tmp_path: Path) -> None:
    regions = cut_into_regions(noise(3, "uint8"), tmp_path, ".png")
    assert stitch(regions, 3, 2, tmp_path / "frame.png", size=(101, 77)).width == 101
    with pytest.raises(StitchError, match="make a 101x77 frame, the scene a 101x78 one"):
        stitch(regions, 3, 2, tmp_path / "other.png", size=(101, 78))


def test_a_region_that_is_no_image_fails_the_frame(tmp_path: Path) -> None:
    regions = cut_into_regions(noise(3, "uint8"), tmp_path, ".png")
    regions[0, 1].write_bytes(b"not a png")
    with pytest.raises(StitchError, match=r"cannot read r0_1\.png"):
        stitch(regions, 3, 2, tmp_path / "frame.png")


def test_a_frame_is_stitched_once_its_regions_are_all_in_then_they_go(tmp_path: Path) -> None:
    whole = tmp_path / "whole.png"
    assert noise(4, "uint8").write(str(whole))
    folder = tmp_path / "tiles" / "frame_00001"
    folder.mkdir(parents=True)
    grid = cut_into_regions(read(whole), folder, ".png")
    regions = {c + 3 * r: path for (c, r), path in grid.items()}
    out = tmp_path / "frame_00001.png"
    kept = regions[5].read_bytes()
    regions[5].unlink()
    assert stitch_frame(regions, 3, 2, out) is None  # one region still missing
    assert not out.exists() and regions[0].is_file()
    regions[5].write_bytes(kept)

    assert stitch_frame(regions, 3, 2, out, size=(101, 77)) == (101, 77, ("R", "G", "B", "A"))

    comparison = oiio.ImageBufAlgo.compare(read(out), read(whole), 0.0, 0.0)
    assert comparison.nfail == 0
    assert not (tmp_path / "tiles").exists()  # the regions, and their emptied folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frame_00001.png", "whole.png"]


def test_a_failed_stitch_leaves_no_frame_and_keeps_the_regions(tmp_path: Path) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    regions = {
        c + 3 * r: path
        for (c, r), path in cut_into_regions(noise(3, "uint8"), folder, ".png").items()
    }
    out = tmp_path / "frame_00001.png"
    with pytest.raises(StitchError, match="the scene a 100x77 one"):
        stitch_frame(regions, 3, 2, out, size=(100, 77))
    assert not out.exists() and all(p.is_file() for p in regions.values())
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_regions_rendered_with_a_margin_are_cut_to_their_own_pixels(tmp_path: Path) -> None:
    image = noise(4, "half")  # 101 x 77
    regions = {}
    for index in range(6):
        col, row = index % 3, index // 3
        rendered = margin_box(core_box(3, 2, col, row, 101, 77), 9, 101, 77)
        roi = oiio.ROI(rendered.left, rendered.right, rendered.top, rendered.bottom)
        path = tmp_path / f"tile_{index:03d}.exr"
        assert oiio.ImageBufAlgo.cut(image, roi).write(str(path))
        regions[index] = path
    whole = tmp_path / "whole.exr"
    assert image.write(str(whole))
    out = tmp_path / "frame.exr"

    assert stitch_frame(regions, 3, 2, out, size=(101, 77), margin=9) is not None

    comparison = oiio.ImageBufAlgo.compare(read(out), read(whole), 0.0, 0.0)
    assert comparison.nfail == 0 and comparison.maxerror == 0.0


def test_a_region_whose_margin_is_not_the_one_asked_fails_the_stitch(tmp_path: Path) -> None:
    folder = tmp_path / "tiles"
    folder.mkdir()
    grid = cut_into_regions(noise(3, "uint8"), folder, ".png")  # no margin rendered
    regions = {c + 3 * r: path for (c, r), path in grid.items()}
    with pytest.raises(StitchError, match=r"with its margin is 33x38, the frame's pixels make it"):
        stitch_frame(regions, 3, 2, tmp_path / "frame.png", size=(101, 77), margin=4)


def test_sample_parts_merge_to_their_mean_weighted_by_samples(tmp_path: Path) -> None:
    parts = []
    for k, count in enumerate((2, 3, 5)):
        image = noise(4, "half" if k == 1 else "float")  # parts in any float depth
        assert oiio.ImageBufAlgo.mul(image, image, float(k + 1))
        path = tmp_path / f"part{k}.exr"
        assert image.write(str(path))
        parts.append((path, count))
    out = tmp_path / "merged.exr"

    assert merge_samples(parts, out) == (101, 77, ("R", "G", "B", "A"))

    read_back = [read(path).get_pixels(oiio.FLOAT) for path, _ in parts]
    expected = sum(px * count for px, (_, count) in zip(read_back, parts, strict=True)) / 10
    merged = read(out)
    assert merged.spec().format == "float"
    assert np.abs(merged.get_pixels(oiio.FLOAT) - expected).max() < 1e-6


def test_parts_of_another_size_are_not_merged(tmp_path: Path) -> None:
    small = oiio.ImageBufAlgo.cut(noise(4, "float"), oiio.ROI(0, 50, 0, 77))
    paths = [tmp_path / "a.exr", tmp_path / "b.exr"]
    assert noise(4, "float").write(str(paths[0])) and small.write(str(paths[1]))
    with pytest.raises(StitchError, match=r"b\.exr is 50x77"):
        merge_samples([(paths[0], 4), (paths[1], 4)], tmp_path / "merged.exr")
