"""A scene saved by a newer Blender than a node runs: that node refuses it before Blender
starts, saying why, and the job's frames go to a node that can open it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.integration.farm_procs import farm
from tests.orch_helpers import FINAL, wait_job

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

        # Pinned to the Blender that cannot open it: refused at once, not queued forever.
        pinned = client.post(
            "/render",
            json={"scene": scene["scene"], "frames": "1", "blender_version": "3.4"},
        )
        assert pinned.status_code == 409, pinned.text
        detail = pinned.json()["detail"]
        assert "saved by Blender 5.0" in detail and "3.4.1 (1)" in detail, detail


def test_a_farm_whose_nodes_are_all_older_refuses_the_job_and_a_node_says_why(
    tmp_path: Path,
) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        node = f.start_node(version="3.4.1")
        client = f.client()
        f.wait_nodes(client, 1)
        scene = client.post("/scenes", files={"file": ("five.blend", SAVED_BY_5_0)}).json()
        created = client.post("/render", json={"scene": scene["scene"], "frames": "1-2"})
        assert created.status_code == 409, created.text
        detail = created.json()["detail"]
        assert "saved by Blender 5.0" in detail and "3.4.1 (1)" in detail, detail

        # Asked directly, the node itself refuses before Blender runs, saying why.
        sha = scene["scene"].removeprefix("sha256:")
        with httpx.Client(base_url=node.url, timeout=10) as direct:
            assert direct.put(f"/scenes/{sha}", content=SAVED_BY_5_0).status_code == 201
            job_id = direct.post("/jobs", json={"scene": scene["scene"], "frames": "1-2"}).json()[
                "id"
            ]
            deadline = time.monotonic() + 30
            while (job := direct.get(f"/jobs/{job_id}").json())["state"] not in FINAL:
                assert time.monotonic() < deadline, job
                time.sleep(0.05)
        assert job["state"] == "failed"
        error = job["frames"][0]["error"]
        assert "saved by Blender 5.0" in error and "3.4.1" in error
        assert f.rendered_by(0) == []
