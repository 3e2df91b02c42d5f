"""A still split in tiles across a farm of real Blender nodes is the one-node render of it,
pixel for pixel, in PNG and in multilayer OpenEXR (dither off: Blender's dither noise is
seeded per region, the one difference a tiled render has)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farm_common.protocol import frame_name
from tests.integration.conftest import SCENES
from tests.integration.farm_procs import farm, submit
from tests.integration.test_bpy_real import needs_bpy
from tests.integration.test_tiles_real import BLENDER, demo_with, needs_blender
from tests.orch_helpers import wait_job

pytestmark = pytest.mark.blender


def frame_file(root: Path, job_id: str, suffix: str) -> Path:
    return root / "orch" / "renders" / job_id / frame_name(1, suffix)


@needs_blender
@pytest.mark.parametrize(
    ("fmt", "suffix", "tiles", "margin"),
    [("PNG", ".png", 9, 0), ("OPEN_EXR_MULTILAYER", ".exr", 6, 16)],
)
def test_a_still_in_tiles_on_three_nodes_is_the_one_node_render(
    tmp_path: Path, fmt: str, suffix: str, tiles: int, margin: int
) -> None:
    """With a margin, too: the pixels Blender renders for a border are those the stitcher
    cuts (the scene does not denoise; the margin is asked for)."""
    with farm(tmp_path) as f:
        demo_with(f.scenes / "still.blend", "s.render.dither_intensity = 0.0")
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(blender=BLENDER, extra=("--threads", "1"))
        client = f.client()
        f.wait_nodes(client, 3)
        whole = wait_job(client, submit(client, scene="still.blend", frames="1", format=fmt), 300)
        tiled_id = submit(
            client, scene="still.blend", frames="1", format=fmt, tiles=tiles, tile_margin=margin
        )
        tiled = wait_job(client, tiled_id, 300)
        assert whole["state"] == tiled["state"] == "completed", (whole, tiled)
        assert tiled["tiles"]["done"] == tiles and tiled["frames"]["done"] == 1
        assert len(tiled["nodes"]) >= 2
        one = oiio.ImageBuf(str(frame_file(tmp_path, whole["id"], suffix)))
        split = oiio.ImageBuf(str(frame_file(tmp_path, tiled_id, suffix)))
        assert list(split.spec().channelnames) == list(one.spec().channelnames)
        assert split.spec().format == one.spec().format
        comparison = oiio.ImageBufAlgo.compare(split, one, 0.0, 0.0)
        assert comparison.nfail == 0, (comparison.maxerror, comparison.nfail)


def seam_errors(frame: Path, whole: Path) -> tuple[float, float]:
    """Mean absolute difference (0-255) of `frame` from `whole` along the seams of a 2x2 grid
    (3 pixels each side of the middle lines), and everywhere else."""
    diff = np.abs(
        oiio.ImageBuf(str(frame)).get_pixels(oiio.FLOAT)
        - oiio.ImageBuf(str(whole)).get_pixels(oiio.FLOAT)
    ).max(axis=2)
    height, width = diff.shape
    band = np.zeros(diff.shape, bool)
    band[:, width // 2 - 3 : width // 2 + 3] = True
    band[height // 2 - 3 : height // 2 + 3, :] = True
    return float(diff[band].mean() * 255), float(diff[~band].mean() * 255)


@needs_bpy
@needs_blender
def test_a_denoised_still_gets_a_margin_and_no_seams(tmp_path: Path) -> None:
    """Blender 5's OpenImageDenoise on each region: without pixels around it, a region's
    edges come out unlike the whole frame's (a seam); with the margin the farm gives a scene
    that denoises, the seams differ from the whole frame no more than the rest does (the
    denoiser's result depends a little on the image it is given, everywhere)."""
    with farm(tmp_path) as f:
        # Saved by Blender 5 (the Debian 3.4 has no OpenImageDenoise to choose).
        code = (
            "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
            "s = bpy.context.scene; s.render.dither_intensity = 0.0; "
            "s.cycles.use_denoising = True; s.cycles.denoiser = 'OPENIMAGEDENOISE'; "
            "s.view_layers[0].cycles.use_denoising = True; "
            "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], copy=True)"
        )
        target = f.scenes / "denoised.blend"
        subprocess.run(
            [sys.executable, "-c", code, str(SCENES / "demo.blend"), str(target)],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(blender="bpy", extra=("--threads", "1"))
        client = f.client()
        f.wait_nodes(client, 3)
        jobs = {
            "whole": submit(client, scene="denoised.blend", frames="1"),
            "margin": submit(client, scene="denoised.blend", frames="1", tiles=4),
            "none": submit(client, scene="denoised.blend", frames="1", tiles=4, tile_margin=0),
        }
        done = {name: wait_job(client, job, 300) for name, job in jobs.items()}
        assert all(d["state"] == "completed" for d in done.values()), done
        assert done["margin"]["tiles"]["margin"] == 32  # the scene denoises: the default
        whole = frame_file(tmp_path, jobs["whole"], ".png")
        seam, rest = seam_errors(frame_file(tmp_path, jobs["none"], ".png"), whole)
        assert seam > 4 * rest  # the test sees a seam where there is one
        seam, rest = seam_errors(frame_file(tmp_path, jobs["margin"], ".png"), whole)
        assert seam < 2 * rest + 0.05, (seam, rest)
