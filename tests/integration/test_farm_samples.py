"""Frames split by samples on a farm of real processes (stand-in Blender, both engines): parts
dispatched like batches, merged in float, developed on a node into the scene's format,
counted per frame, failed and refused like the rest."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import OpenImageIO as oiio
import pytest

from farm_common.protocol import frame_name
from tests.fake_blender import sample_pixels, write_image
from tests.integration.conftest import SCENES
from tests.integration.farm_procs import Farm, farm, submit
from tests.orch_helpers import wait_job

SIZE = (40, 30)
FAKE_BPY = SCENES.parent / "tests" / "fake_bpy" / "python"
SAMPLES = 16  # scenes/demo.blend's, as the orchestrator reads them from the file


def whole_frame(tmp_path: Path, frame: int, fmt: str = "PNG") -> Path:
    """The frame as a one-node render of all its samples gives it (stand-in Blender)."""
    path = tmp_path / f"whole_{frame}{'.exr' if fmt == 'OPEN_EXR' else '.png'}"
    pixels = sample_pixels(SIZE, (0, 0, *SIZE), frame, range(SAMPLES))
    write_image(str(path), *SIZE, pixels, fmt)
    return path


def pixels(path: Path) -> np.ndarray:
    return oiio.ImageBuf(str(path)).get_pixels(oiio.FLOAT)


def start(f: Farm, nodes: int, engine: str = "blender", **fake: str) -> None:
    shutil.copy(SCENES / "demo.blend", f.scenes / "real.blend")  # Cycles, 16 samples
    f.start_orchestrator()
    blender = f"bpy:{FAKE_BPY}" if engine == "bpy" else None
    for _ in range(nodes):
        f.start_node(blender=blender, SIZE=f"{SIZE[0]}x{SIZE[1]}", SAMPLES=str(SAMPLES), **fake)
    f.wait_nodes(f.client(), nodes)


@pytest.mark.parametrize("engine", ["blender", "bpy"])
def test_a_still_split_in_four_sample_parts_is_the_frame_of_all_samples(
    tmp_path: Path, engine: str
) -> None:
    with farm(tmp_path) as f:
        start(f, 3, engine, SECONDS="0.2")
        client = f.client()
        job_id = submit(client, scene="real.blend", frames="7", split_samples=4)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert status["frames"] == {"total": 1, "done": 1, "failed": 0, "rendering": 0}
        assert status["samples"] == {
            "per_frame": 4, "samples": SAMPLES, "total": 4, "done": 4, "failed": 0,
            "rendering": 0,
        }  # fmt: skip
        assert "tiles" not in status
        assert sorted(b["part"] for b in status["batches"]) == [0, 1, 2, 3]
        assert len(status["nodes"]) >= 2  # the parts spread over the farm
        # The parts' folder is gone; the frame is the scene's PNG, developed by a node.
        assert f.outputs(job_id) == [frame_name(7, ".png")]
        out = tmp_path / "orch" / "renders" / job_id / frame_name(7, ".png")
        assert oiio.ImageBuf(str(out)).spec().format == "uint8"
        difference = np.abs(pixels(out) - pixels(whole_frame(tmp_path, 7)))
        assert difference.max() <= 1 / 255 + 1e-6, difference.max()  # float rounding tips a level
        assert (difference > 0).mean() < 0.02
        (entry,) = client.get(f"/render/{job_id}/frames").json()["frames"]
        assert entry["state"] == "done" and entry["parts"] == entry["parts_done"] == 4
        assert "tiles" not in entry


def test_every_frame_of_a_range_merges_into_float_exr(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        start(f, 2)
        client = f.client()
        job_id = submit(client, scene="real.blend", frames="1-3", split_samples=3,
                        format="OPEN_EXR")  # fmt: skip
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert status["frames"]["done"] == 3 and status["samples"]["done"] == 9
        assert f.outputs(job_id) == [frame_name(n, ".exr") for n in (1, 2, 3)]
        for n in (1, 2, 3):
            out = tmp_path / "orch" / "renders" / job_id / frame_name(n, ".exr")
            assert oiio.ImageBuf(str(out)).spec().format == "float"
            # Parts of 5, 5 and 6 samples, weighted: the mean of all 16.
            difference = np.abs(pixels(out) - pixels(whole_frame(tmp_path, n, "OPEN_EXR")))
            assert difference.max() < 1e-6, difference.max()
        assert f.rendered() == {1: 3, 2: 3, 3: 3}  # each part once; developing renders nothing


def test_a_part_failing_on_three_nodes_fails_its_frame_with_blenders_error(
    tmp_path: Path,
) -> None:
    with farm(tmp_path) as f:
        start(f, 3, FAIL="5")
        client = f.client()
        job_id = submit(client, scene="real.blend", frames="4-5", split_samples=2)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "failed", status
        assert status["frames"] == {"total": 2, "done": 1, "failed": 1, "rendering": 0}
        failed = status["failed_frames"][0]
        assert failed["frame"] == 5 and failed["part"] in (0, 1) and "tile" not in failed
        assert "CUDA error" in failed["error"] and len(failed["nodes"]) == 3
        assert "frame 5 part" in status["error"]
        entry = client.get(f"/render/{job_id}/frames", params={"state": "failed"}).json()
        assert entry["frames"][0]["error"].startswith("part ")
        assert f.outputs(job_id)[0] == frame_name(4, ".png")


def test_splits_the_farm_cannot_make_are_refused_with_what_to_do(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        start(f, 1)
        client = f.client()

        def refused(**body: object) -> str:
            resp = client.post("/render", json={"scene": "real.blend", "frames": "1", **body})
            assert resp.status_code == 400, resp.text
            return str(resp.json()["detail"])

        assert "not both" in refused(split_samples=2, tiles=4)
        assert "multilayer" in refused(split_samples=2, format="OPEN_EXR_MULTILAYER")
        assert "at most that many" in refused(split_samples=17)
        # The stand-in scene file is no .blend: nothing to read the engine and samples from.
        assert "cannot be read" in refused(scene="demo.blend", split_samples=2)
        resp = client.post("/render", json={"scene": "real.blend", "frames": "1",
                                            "split_samples": 0})  # fmt: skip
        assert resp.status_code == 422
