"""The bpy engine with the real Blender 5.0 module (pip install bpy): a warm slot, a scene saved
by Blender 5.0 (refused by a 3.4 node, rendered here), a worker killed mid-frame, cancel."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.conftest import SCENES, Node, StartNode, group_alive

pytestmark = pytest.mark.blender

try:
    import importlib.util

    HAVE_BPY = importlib.util.find_spec("bpy") is not None
except (ImportError, ValueError):
    HAVE_BPY = False

needs_bpy = pytest.mark.skipif(
    not HAVE_BPY, reason="bpy (Blender as a Python module) is not installed: pip install bpy"
)


def bpy_node(start_node: StartNode, **overrides: object) -> Node:
    return start_node(blender="bpy", threads=2, **overrides)


def worker_pids() -> set[int]:
    """The bpy workers this test process started (its nodes run in its threads)."""
    found = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.endswith(b"bpy_worker.py") for a in args) and b"bwrap" not in args[0]:
            found.add(int(cmdline.parent.name))
    return found


def wait_rendering(node: Node, job_id: str, frame: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = {f["frame"]: f["state"] for f in node.job(job_id)["frames"]}
        if states[frame] == "rendering":
            return
        time.sleep(0.05)
    raise AssertionError(f"frame {frame} never started rendering")


@needs_bpy
def test_a_warm_slot_renders_the_demo_in_a_sandbox(start_node: StartNode, tmp_path: Path) -> None:
    from PIL import Image, ImageChops

    node = bpy_node(start_node, sandbox="auto")
    info = node.client.get("/info").json()
    assert info["engine"] == "bpy" and info["blender_version"].startswith("5."), info
    first = node.wait(node.submit("1-2", session="job-a"), timeout=120)
    second = node.wait(node.submit("3-4", session="job-a"), timeout=120)
    assert first["state"] == second["state"] == "completed", (first, second)
    assert (first["warm"], second["warm"]) == (False, True)
    assert second["startup_seconds"] < first["startup_seconds"], (first, second)
    for frame in (3, 4):
        image = node.client.get(f"/jobs/{second['id']}/frames/{frame}")
        assert image.status_code == 200
        assert Image.open(io.BytesIO(image.content)).size == (320, 240)
    # Frame 4, rendered after three others in the same worker, is the frame a fresh bpy makes.
    fresh = tmp_path / "fresh_00004"
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1], use_scripts=False); "
        "s = bpy.context.scene; s.render.threads_mode = 'FIXED'; s.render.threads = 2; "
        "s.frame_set(4); s.render.filepath = sys.argv[2]; "
        "bpy.ops.render.render(write_still=True)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(SCENES / "demo.blend"), str(fresh)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    warm = node.client.get(f"/jobs/{second['id']}/frames/4").content
    with Image.open(io.BytesIO(warm)) as ours, Image.open(f"{fresh}.png") as theirs:
        difference = ImageChops.difference(ours.convert("RGBA"), theirs.convert("RGBA"))
        assert difference.getbbox() is None, "the warm worker's frame differs from a fresh one"


@pytest.fixture(scope="module")
def scene_50(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo scene saved by Blender 5.0 (its header says BLENDER17-01v0500)."""
    target = tmp_path_factory.mktemp("v50") / "demo_50.blend"
    code = (
        "import bpy, sys; bpy.ops.wm.open_mainfile(filepath=sys.argv[1], use_scripts=False); "
        "bpy.ops.wm.save_as_mainfile(filepath=sys.argv[2], copy=True)"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(SCENES / "demo.blend"), str(target)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    assert target.read_bytes()[:17] == b"BLENDER17-01v0500"
    return target


@needs_bpy
def test_a_blender_5_scene_is_refused_by_3_4_and_rendered_by_bpy(
    start_node: StartNode, scene_50: Path
) -> None:
    body = scene_50.read_bytes()
    sha = hashlib.sha256(body).hexdigest()
    old = start_node(blender="blender")  # Debian's Blender 3.4
    upload = old.client.put(f"/scenes/{sha}", content=body)
    assert upload.status_code == 201, upload.text
    refused = old.wait(old.submit("1", scene=f"sha256:{sha}"), timeout=60)
    assert refused["state"] == "failed"
    assert "saved by Blender 5.0" in refused["refused"], refused

    new = bpy_node(start_node)
    assert new.client.put(f"/scenes/{sha}", content=body).status_code == 201
    done = new.wait(new.submit("1", scene=f"sha256:{sha}"), timeout=120)
    assert done["state"] == "completed", done


@needs_bpy
def test_a_killed_worker_fails_its_frame_and_a_fresh_one_renders_the_rest(
    start_node: StartNode,
) -> None:
    node = bpy_node(start_node)
    before = worker_pids()
    job_id = node.submit("1-3", session="job-a")
    wait_rendering(node, job_id, 2)
    (pid,) = worker_pids() - before
    os.kill(pid, signal.SIGKILL)
    job = node.wait(job_id, timeout=120)
    states = {f["frame"]: (f["state"], f.get("error", "")) for f in job["frames"]}
    assert states[1][0] == states[3][0] == "done", job
    assert states[2][0] == "failed" and "SIGKILL" in states[2][1], job


@needs_bpy
def test_cancel_stops_a_rendering_worker_within_two_seconds(start_node: StartNode) -> None:
    node = bpy_node(start_node)
    before = worker_pids()
    job_id = node.submit("1-4", session="job-a")
    wait_rendering(node, job_id, 1)
    (pid,) = worker_pids() - before
    pgid = os.getpgid(pid)
    began = time.monotonic()
    assert node.client.delete(f"/jobs/{job_id}").status_code == 200
    while group_alive(pgid):
        assert time.monotonic() - began < 2.0, "the worker outlived the cancel by 2 s"
        time.sleep(0.02)
    assert node.job(job_id)["state"] == "cancelled"
