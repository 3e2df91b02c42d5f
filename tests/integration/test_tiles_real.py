"""Regions of a frame rendered by a node with the real Blender (Debian's 3.4 binary, and bpy
5.0 on a warm slot), stitched by the orchestrator's stitcher: the frame Blender renders whole,
pixel for pixel (FACTS: with dither off; dither noise depends on a pixel's place)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import OpenImageIO as oiio
import pytest

from farm_common.blendfile import scene_denoises, scene_resolution
from farm_common.tiles import grid, tile_of
from orchestrator.stitch import stitch
from tests.integration.conftest import SCENES, Node, StartNode
from tests.integration.test_bpy_real import needs_bpy

pytestmark = pytest.mark.blender

BLENDER = shutil.which("blender")
needs_blender = pytest.mark.skipif(
    BLENDER is None and not os.environ.get("CI"), reason="no Blender installed"
)


def demo_with(target: Path, change: str) -> Path:
    """scenes/demo.blend with `change` (Python run on `s`, its scene) saved as `target` by
    Blender 3.4, so both engines open it."""
    assert BLENDER is not None, "blender is not on PATH"
    code = (
        f"import bpy, sys; s = bpy.context.scene; {change}; "
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[-1], copy=True)"
    )
    subprocess.run(
        [BLENDER, "-b", str(SCENES / "demo.blend"), "--python-expr", code, "--", str(target)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return target


@pytest.fixture(scope="module")
def undithered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo with dither off."""
    target = tmp_path_factory.mktemp("tiles") / "demo_undithered.blend"
    return demo_with(target, "s.render.dither_intensity = 0.0")


def render_tiles(node: Node, scene: Path, tiles: int, folder: Path) -> tuple[Path, Path]:
    """Frame 1 as `tiles` regions (one node job each, as the orchestrator sends them) and
    whole; returns (stitched, whole)."""
    body = scene.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    assert node.client.put(f"/scenes/{sha}", content=body).status_code == 201
    cols, rows = grid(tiles)
    regions = {}
    for index in range(tiles):
        col, row = tile_of(cols, rows, index)
        tile = {"cols": cols, "rows": rows, "col": col, "row": row}
        job = node.wait(node.submit("1", f"sha256:{sha}", session="j", tile=tile), timeout=120)
        assert job["state"] == "completed", node.client.get(f"/jobs/{job['id']}/log").text[-2000:]
        regions[col, row] = folder / f"tile_{col}_{row}.png"
        regions[col, row].write_bytes(node.client.get(f"/jobs/{job['id']}/frames/1").content)
    whole = node.wait(node.submit("1", f"sha256:{sha}", session="j"), timeout=120)
    assert whole["state"] == "completed"
    (folder / "whole.png").write_bytes(node.client.get(f"/jobs/{whole['id']}/frames/1").content)
    stitched = stitch(regions, cols, rows, folder / "stitched.png", size=scene_resolution(scene))
    assert (stitched.width, stitched.height) == (320, 240)
    return folder / "stitched.png", folder / "whole.png"


def assert_identical(a: Path, b: Path) -> None:
    comparison = oiio.ImageBufAlgo.compare(oiio.ImageBuf(str(a)), oiio.ImageBuf(str(b)), 0, 0)
    assert comparison.nfail == 0, (comparison.maxerror, comparison.nfail)


@needs_bpy
@needs_blender
def test_regions_from_a_warm_bpy_slot_stitch_into_its_whole_frame(
    start_node: StartNode, undithered: Path, tmp_path: Path
) -> None:
    node = start_node(blender="bpy", threads=2)
    stitched, whole = render_tiles(node, undithered, 6, tmp_path)  # 3x2: uneven edges
    assert_identical(stitched, whole)


@needs_blender
def test_the_size_read_from_the_file_is_the_size_blender_renders(tmp_path: Path) -> None:
    """Resolution times an odd percentage, as the stitcher checks a frame against it."""
    assert BLENDER is not None
    scene = demo_with(
        tmp_path / "odd.blend",
        "s.cycles.samples = 1; s.render.resolution_x, s.render.resolution_y = 333, 201; "
        "s.render.resolution_percentage = 37",
    )
    subprocess.run(
        [BLENDER, "-b", str(scene), "-o", str(tmp_path / "f_#"), "-F", "PNG", "-f", "1"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    rendered = oiio.ImageBuf(str(tmp_path / "f_1.png")).spec()
    assert scene_resolution(scene) == (rendered.width, rendered.height) == (123, 74)


@needs_blender
@pytest.mark.parametrize(
    ("change", "denoises"),
    [
        ("s.cycles.use_denoising = True; s.view_layers[0].cycles.use_denoising = True", True),
        ("s.cycles.use_denoising = False; s.view_layers[0].cycles.use_denoising = True", False),
        ("s.cycles.use_denoising = True; s.view_layers[0].cycles.use_denoising = False", False),
        ("s.cycles.use_denoising = True; s.render.engine = 'BLENDER_EEVEE'", False),
    ],
)
def test_whether_a_scene_denoises_is_read_from_the_file(
    tmp_path: Path, change: str, denoises: bool
) -> None:
    """What decides a tiled job's default margin, against files Blender 3.4 saves."""
    assert scene_denoises(demo_with(tmp_path / "scene.blend", change)) is denoises
