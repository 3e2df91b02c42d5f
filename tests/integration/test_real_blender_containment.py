"""Real Blender: a scene whose compositor File Output node aims outside its job (an absolute
folder, `//../`, the orchestrator's database, another scene in the node's store) writes only
into the job's folder, with the scene guard alone and with the sandbox beneath it."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Node, StartNode

pytestmark = pytest.mark.blender

BLENDER = shutil.which("blender")
DEMO = Path(__file__).resolve().parents[2] / "scenes" / "demo.blend"
DEMO_SHA = hashlib.sha256(DEMO.read_bytes()).hexdigest()
# The frame whose number, filling one `#`, completes the demo scene's stored name.
VICTIM_FRAME = int(next(c for c in reversed(DEMO_SHA) if c.isdigit()))


def file_output_scene(path: Path, base: str, slot: str, *, extension: bool) -> Path:
    """A tiny Cycles scene (one sample: Workbench needs OpenGL, which containers lack) with a
    File Output node fed by the render, saved by Blender."""
    make = f"""
import bpy
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.cycles.samples = 1
s.cycles.use_denoising = False
s.cycles.device = 'CPU'
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 32, 24, 100
s.render.use_file_extension = {extension!r}
s.use_nodes = True
tree = s.node_tree
layers = next(n for n in tree.nodes if n.bl_idname == 'CompositorNodeRLayers')
out = tree.nodes.new('CompositorNodeOutputFile')
out.base_path = {base!r}
out.file_slots[0].path = {slot!r}
tree.links.new(layers.outputs['Image'], out.inputs[0])
bpy.ops.wm.save_as_mainfile(filepath={str(path)!r})
"""
    assert BLENDER is not None
    subprocess.run(
        [BLENDER, "-b", "--factory-startup", "--python-expr", make],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return path


def upload(node: Node, path: Path) -> str:
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    assert node.client.put(f"/scenes/{sha}", content=data).status_code in (200, 201)
    return sha


def snapshot(folder: Path, *skip: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not any(p.is_relative_to(s) for s in skip)
    }


@pytest.mark.skipif(BLENDER is None and not os.environ.get("CI"), reason="no Blender installed")
@pytest.mark.parametrize(
    ("engine", "sandbox"), [("blender", "none"), ("blender", "auto"), ("bpy", "auto")]
)
@pytest.mark.parametrize("aim", ["absolute", "parent", "database", "another scene"])
def test_a_file_output_node_never_writes_outside_its_job(
    start_node: StartNode, tmp_path: Path, engine: str, sandbox: str, aim: str
) -> None:
    """`bpy`: the warm worker writes only into its own folder, under the same sandbox."""
    farm = tmp_path / "farm"  # laid out as `farm up` lays out .farm/
    (farm / "orchestrator").mkdir(parents=True)
    # The database's name ends in a digit here, so that frame 1 filling `#` hits it exactly.
    (farm / "orchestrator" / "farm.sqlite1").write_bytes(b"SQLite format 3\0 the jobs")
    (farm / "outside").mkdir()
    frame, base, slot, extension = {
        "absolute": (1, f"{farm / 'outside'}/", "escaped_", True),
        "parent": (1, "//../../outside/", "escaped_", True),  # from farm/node-1/scenes/
        "database": (1, "//../../orchestrator/", "farm.sqlite#", False),
        "another scene": (VICTIM_FRAME, "//", DEMO_SHA[:-1] + "#.blend", False),
    }[aim]
    scene = file_output_scene(tmp_path / "attack.blend", base, slot, extension=extension)
    node = start_node(
        blender=BLENDER if engine == "blender" else "bpy",
        sandbox=sandbox,
        data_dir=farm / "node-1",
        sandbox_hide=[farm],
    )
    upload(node, DEMO)  # the victim: another job's scene in the node's store
    attack = upload(node, scene)
    # A job's folders, and a bpy slot's worker folder, are where Blender may write.
    jobs, workers = farm / "node-1" / "jobs", farm / "node-1" / "workers"
    own = jobs if engine == "blender" else workers
    before = snapshot(farm, jobs, workers)
    job = node.wait(node.submit(str(frame), scene=f"sha256:{attack}", session="j"), timeout=240)
    log = node.client.get(f"/jobs/{job['id']}/log").text
    assert job["state"] == "completed", log[-3000:]
    assert snapshot(farm, jobs, workers) == before, log[-3000:]
    assert "File Output node" in log
    passes = own / (job["id"] if engine == "blender" else "slot-0") / "passes"
    assert [p for p in passes.rglob("*") if p.is_file()], log[-3000:]
    # The victim is still whole, and still served to the next job of it.
    assert node.client.head(f"/scenes/{DEMO_SHA}").status_code == 200
