"""A still split by samples across a farm of real Blender nodes is the one-node render of all
its samples: in float EXR to float rounding, and in PNG through the scene's colour management
(Filmic on Blender 3.4's demo, AgX where Blender 5 saved it) to a level where rounding tips a
pixel. Dither off: Blender's dither is noise of its own in each save."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farm_common.blendfile import scene_cycles
from farm_common.protocol import frame_name
from tests.integration.conftest import SCENES
from tests.integration.farm_procs import farm, submit
from tests.integration.test_bpy_real import needs_bpy
from tests.integration.test_tiles_real import BLENDER, demo_with, needs_blender
from tests.orch_helpers import wait_job

pytestmark = pytest.mark.blender


def frame_file(root: Path, job_id: str, suffix: str) -> Path:
    return root / "orch" / "renders" / job_id / frame_name(1, suffix)


def pixels(path: Path) -> np.ndarray:
    return oiio.ImageBuf(str(path)).get_pixels(oiio.FLOAT)


def saved_by_blender_5(target: Path, change: str) -> Path:
    """scenes/demo.blend with `change` (on `s`, its scene) saved by bpy 5.0."""
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1]); "
        f"s = bpy.context.scene; {change}; "
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], copy=True)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(SCENES / "demo.blend"), str(target)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return target


@pytest.mark.parametrize(
    "engine", [pytest.param("blender", marks=needs_blender), pytest.param("bpy", marks=needs_bpy)]
)
def test_a_still_split_by_samples_on_three_nodes_is_the_one_node_render(
    tmp_path: Path, engine: str
) -> None:
    with farm(tmp_path) as f:
        scene = f.scenes / "still.blend"
        if engine == "blender":
            demo_with(scene, "s.render.dither_intensity = 0.0")  # 16 samples
        else:  # Blender 5 keeps Cycles' settings elsewhere in the file: read them there
            saved_by_blender_5(scene, "s.render.dither_intensity = 0.0; s.cycles.samples = 24")
        samples = 16 if engine == "blender" else 24
        assert scene_cycles(scene) == ("CYCLES", samples, False)
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(blender=BLENDER if engine == "blender" else "bpy",
                         extra=("--threads", "1"))  # fmt: skip
        client = f.client()
        f.wait_nodes(client, 3)
        jobs = {
            "whole": submit(client, scene="still.blend", frames="1"),
            "split": submit(client, scene="still.blend", frames="1", split_samples=4),
            "whole_exr": submit(client, scene="still.blend", frames="1", format="OPEN_EXR"),
            "split_exr": submit(client, scene="still.blend", frames="1", format="OPEN_EXR",
                                split_samples=3),
        }  # fmt: skip
        done = {name: wait_job(client, job, 300) for name, job in jobs.items()}
        assert all(d["state"] == "completed" for d in done.values()), done
        assert done["split"]["samples"]["samples"] == samples
        assert len(done["split"]["nodes"]) >= 2

        # Float: the parts' weighted mean is the render of all the samples.
        merged = pixels(frame_file(tmp_path, jobs["split_exr"], ".exr"))
        whole = pixels(frame_file(tmp_path, jobs["whole_exr"], ".exr"))
        assert np.abs(merged - whole).max() < 1e-5

        # Display: developed by the node as Blender saves its render (view transform, look,
        # exposure): Blender's own PNG but where float rounding tips a pixel over a level.
        split = oiio.ImageBuf(str(frame_file(tmp_path, jobs["split"], ".png")))
        one = oiio.ImageBuf(str(frame_file(tmp_path, jobs["whole"], ".png")))
        assert (split.spec().format, split.spec().nchannels) == (
            one.spec().format, one.spec().nchannels
        )  # fmt: skip
        comparison = oiio.ImageBufAlgo.compare(split, one, 0.0, 0.0)
        assert comparison.maxerror <= 1 / 255 + 1e-6, comparison.maxerror
        assert comparison.nfail <= 0.001 * 320 * 240 * 3, comparison.nfail
