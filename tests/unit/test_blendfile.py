"""What a .blend says of itself: the Blender that saved it (its header, compressed or not),
its output format and the size of its frames."""

import gzip
from pathlib import Path

import pytest
import zstandard

from farm_common.blendfile import saved_by, scene_image_format, scene_resolution

SCENES = Path(__file__).resolve().parents[2] / "scenes"
DEMO = SCENES / "demo.blend"


@pytest.mark.parametrize(
    ("head", "version"),
    [
        (b"BLENDER-v304REND", (3, 4)),
        (b"BLENDER_v279REND", (2, 79)),
        (b"BLENDER-V402REND", (4, 2)),
        (b"BLENDER17-01v0500", (5, 0)),
        (b"BLENDER17-01v0501", (5, 1)),
        (b"BLENDER", None),
        (b"PK\x03\x04 a zip", None),
    ],
)
@pytest.mark.parametrize("packing", ["plain", "gzip", "zstd"])
def test_the_header_says_which_blender_saved_the_file(
    tmp_path: Path, head: bytes, version: tuple[int, int] | None, packing: str
) -> None:
    data = head + b"\0" * 64
    if packing == "gzip":
        data = gzip.compress(data)
    elif packing == "zstd":
        data = zstandard.ZstdCompressor().compress(data)
    path = tmp_path / "scene.blend"
    path.write_bytes(data)
    assert saved_by(path) == version


def test_the_demo_scene_was_saved_by_blender_3_4_and_renders_png() -> None:
    assert saved_by(DEMO) == (3, 4)
    assert scene_image_format(DEMO) == "PNG"


def test_a_file_that_is_no_blend_has_no_format(tmp_path: Path) -> None:
    path = tmp_path / "x.blend"
    path.write_bytes(b"not a blend at all")
    assert scene_image_format(path) is None
    assert saved_by(tmp_path / "absent.blend") is None


@pytest.mark.parametrize(
    ("scene", "size"),
    [("demo.blend", (320, 240)), ("demo_still.blend", (640, 480)),
     ("shot/shots/010/shot.blend", (160, 120))],
)  # fmt: skip
def test_a_scene_says_the_size_of_its_frames(scene: str, size: tuple[int, int]) -> None:
    assert scene_resolution(SCENES / scene) == size


def test_a_file_that_is_no_blend_has_no_size(tmp_path: Path) -> None:
    path = tmp_path / "x.blend"
    path.write_bytes(b"not a blend at all")
    assert scene_resolution(path) is None
