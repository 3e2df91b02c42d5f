"""A frame split by samples, with real Blender: parts rendered by a node from their own sample
offsets, merged by the orchestrator in linear float (stitch.merge_samples), are the frame
rendered with all the samples; that, developed by a node (`"develop"`: the scene's colour
management and output settings, `save_render`, under the node's sandbox), is the frame Blender
writes itself.

The ground a `--split-samples` job stands on; both engines."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from orchestrator.stitch import merge_samples
from tests.integration.conftest import Node, StartNode
from tests.integration.test_bpy_real import needs_bpy
from tests.integration.test_tiles_real import BLENDER, needs_blender
from tests.integration.test_tiles_real import undithered as undithered  # the fixture

pytestmark = pytest.mark.blender


def fetch(node: Node, scene: str, path: Path, **body: object) -> Path:
    job = node.wait(node.submit("1", scene, session="parts", **body), timeout=180)
    assert job["state"] == "completed", node.client.get(f"/jobs/{job['id']}/log").text[-2000:]
    path.write_bytes(node.client.get(f"/jobs/{job['id']}/frames/1").content)
    return path


def pixels(path: Path) -> np.ndarray:
    return oiio.ImageBuf(str(path)).get_pixels(oiio.FLOAT)


@pytest.mark.parametrize(
    "engine", [pytest.param("blender", marks=needs_blender), pytest.param("bpy", marks=needs_bpy)]
)
def test_sample_parts_merge_into_the_frame_of_all_samples(
    start_node: StartNode, undithered: Path, tmp_path: Path, engine: str
) -> None:
    node = start_node(blender=BLENDER if engine == "blender" else "bpy", threads=2, sandbox="auto")
    body = undithered.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    assert node.client.put(f"/scenes/{sha}", content=body).status_code == 201
    scene = f"sha256:{sha}"
    # The demo renders 16 samples, adaptive sampling off: four parts of 4.
    parts = [
        (fetch(node, scene, tmp_path / f"part{k}.exr", format="OPEN_EXR",
               samples={"start": 4 * k, "count": 4, "total": 16}), 4)
        for k in range(4)
    ]  # fmt: skip
    whole = fetch(node, scene, tmp_path / "whole.exr", format="OPEN_EXR",
                  samples={"start": 0, "count": 16, "total": 16})  # fmt: skip
    assert oiio.ImageBuf(str(whole)).spec().format == "float"

    merged = tmp_path / "merged.exr"
    merge_samples(parts, merged)

    difference = np.abs(pixels(merged) - pixels(whole))
    assert difference.max() < 1e-5, difference.max()
    assert np.abs(pixels(parts[0][0]) - pixels(whole)).mean() > 1e-3  # a part alone is not it

    # Developed by the node: the whole frame's EXR gives Blender's own PNG exactly, and the
    # merged one the same but where float rounding tips a pixel over a level.
    direct = fetch(node, scene, tmp_path / "direct.png", format="PNG")
    for exr in (whole, merged):
        image = exr.read_bytes()
        image_sha = hashlib.sha256(image).hexdigest()
        assert node.client.put(f"/files/{image_sha}", content=image).status_code == 201
        developed = fetch(node, scene, exr.with_suffix(".png"), format="PNG",
                          develop={"1": image_sha})  # fmt: skip
        comparison = oiio.ImageBufAlgo.compare(
            oiio.ImageBuf(str(developed)), oiio.ImageBuf(str(direct)), 0.0, 0.0
        )
        if exr == whole:
            assert comparison.nfail == 0, (comparison.nfail, comparison.maxerror)
        else:
            assert comparison.maxerror <= 1 / 255 + 1e-6 and comparison.nfail <= 20, (
                comparison.nfail,
                comparison.maxerror,
            )
