"""A scene saved by a newer Blender than a node runs: that node refuses it before Blender
starts, saying why, and the job's frames go to a node that can open it."""

from __future__ import annotations

from pathlib import Path

from tests.integration.farm_procs import farm
from tests.orch_helpers import wait_job

SAVED_BY_5_0 = b"BLENDER17-01v0500" + b"\0" * 512  # the header Blender 5.0 writes


def test_only_a_node_with_a_new_enough_blender_renders_a_newer_scene(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        f.start_node(version="3.4.1")
        f.start_node(version="5.0.1")
        client = f.client()
        f.wait_nodes(client, 2)
        scene = client.post("/scenes", files={"file": ("five.blend", SAVED_BY_5_0)}).json()
        created = client.post(
            "/render", json={"scene": scene["scene"], "frames": "1-8", "batch_size": 1}
        )
        job = wait_job(client, created.json()["id"], timeout=60)
        assert job["state"] == "completed", job
        assert f.rendered_by(0) == []  # the 3.4 node never started Blender for it
        assert sorted(f.rendered_by(1)) == list(range(1, 9))


def test_a_node_alone_says_why_it_will_not_render_a_newer_scene(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        f.start_node(version="3.4.1")
        client = f.client()
        f.wait_nodes(client, 1)
        scene = client.post("/scenes", files={"file": ("five.blend", SAVED_BY_5_0)}).json()
        created = client.post("/render", json={"scene": scene["scene"], "frames": "1-2"})
        job = wait_job(client, created.json()["id"], timeout=60)
        assert job["state"] == "failed"
        error = job["failed_frames"][0]["error"]
        assert "saved by Blender 5.0" in error and "3.4.1" in error
        assert f.rendered_by(0) == []
