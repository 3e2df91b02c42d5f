"""The node with the real Blender: render frames of scenes/demo.blend through the HTTP API."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess

import pytest

from tests.integration.conftest import StartNode

pytestmark = pytest.mark.blender

BLENDER = shutil.which("blender")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a PNG must have first."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# In CI (`make test` installs Blender) a missing Blender is a failure, not a skip.
@pytest.mark.skipif(BLENDER is None and not os.environ.get("CI"), reason="no Blender installed")
def test_real_blender_renders_demo_frames_as_320x240_pngs(start_node: StartNode) -> None:
    assert BLENDER is not None, "blender is not on PATH"
    node = start_node(blender=BLENDER, threads=0, sandbox="auto")  # as a node runs by default
    info = node.client.get("/info").json()
    assert info["blender_version"] and info["blender_version"][0].isdigit()
    job_id = node.submit("1-3")
    job = node.wait(job_id, timeout=240)
    assert job["state"] == "completed", node.client.get(f"/jobs/{job_id}/log").text[-3000:]
    assert job["blender_version"] == info["blender_version"]
    for frame in job["frames"]:
        assert frame["state"] == "done" and frame["seconds"] > 0
        response = node.client.get(f"/jobs/{job_id}/frames/{frame['frame']}")
        assert response.headers["content-type"] == "image/png"
        assert png_size(response.content) == (320, 240)
    log = node.client.get(f"/jobs/{job_id}/log").text
    assert "Saved: '" in log and "Blender quit" in log


@pytest.fixture
def freestyle_scene(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny scene with Freestyle on, saved by Blender itself; its name under a scenes dir."""
    assert BLENDER is not None, "blender is not on PATH"
    folder = tmp_path_factory.mktemp("freestyle-scenes")
    path = folder / "freestyle.blend"
    make = (
        "import bpy\n"
        "s = bpy.context.scene\n"
        "s.render.use_freestyle = True\n"
        "s.render.resolution_x, s.render.resolution_y = 32, 24\n"
        "s.render.engine = 'BLENDER_WORKBENCH'\n"
        f"bpy.ops.wm.save_as_mainfile(filepath={str(path)!r})\n"
    )
    subprocess.run(
        [BLENDER, "-b", "--factory-startup", "--python-expr", make],
        check=True,
        capture_output=True,
        timeout=120,
    )
    assert path.is_file()
    return str(folder)


@pytest.mark.skipif(BLENDER is None and not os.environ.get("CI"), reason="no Blender installed")
def test_real_blender_refuses_a_freestyle_scene_unless_allowed(
    start_node: StartNode, freestyle_scene: str
) -> None:
    assert BLENDER is not None
    node = start_node(blender=BLENDER, threads=1, scenes_dir=freestyle_scene)
    job = node.wait(node.submit("1", scene="freestyle.blend"), timeout=120)
    assert job["state"] == "failed", job
    error = job["frames"][0]["error"]
    assert "Freestyle" in error and "--allow-freestyle" in error, error
    assert job["refused"] == error  # real Blender's exit code is our check's

    allowing = start_node(blender=BLENDER, threads=1, scenes_dir=freestyle_scene,
                          allow_freestyle=True)  # fmt: skip
    job = allowing.wait(allowing.submit("1", scene="freestyle.blend"), timeout=240)
    assert job["state"] == "completed", allowing.client.get(f"/jobs/{job['id']}/log").text


@pytest.mark.skipif(BLENDER is None and not os.environ.get("CI"), reason="no Blender installed")
def test_real_blender_past_its_memory_limit_fails_naming_the_limit(start_node: StartNode) -> None:
    # Blender 3.4 maps ~600 MB of address space just to start: 650 MB cannot render a frame.
    assert BLENDER is not None
    node = start_node(blender=BLENDER, threads=1, memory_limit_mb=650)
    job = node.wait(node.submit("1"), timeout=120)
    assert job["state"] == "failed", job
    error = job["frames"][0]["error"]
    assert "650 MB (--memory-limit-mb)" in error, node.client.get(f"/jobs/{job['id']}/log").text
