"""Pools: nodes with tags, jobs that ask for them, on a farm of real processes (fake Blender).
A job renders only on nodes with all its tags; one no node can take waits, saying why."""

from __future__ import annotations

from pathlib import Path

from tests.integration.farm_procs import farm, submit
from tests.orch_helpers import wait_job, wait_until


def test_a_job_renders_only_on_nodes_with_its_tags_and_waits_for_one(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        f.start_node(extra=("--tags", "GPU, highmem"))
        f.start_node()
        client = f.client()
        f.wait_nodes(client, 2)
        tags = {n["url"]: n["tags"] for n in client.get("/nodes").json()}
        assert sorted(tags.values()) == [[], ["gpu", "highmem"]]  # as the node said, lowercased

        gpu = submit(client, frames="1-8", batch_size=1, tags=["gpu"])
        status = wait_job(client, gpu, timeout=60)
        assert status["state"] == "completed" and status["tags"] == ["gpu"]
        assert sorted(f.rendered_by(0)) == list(range(1, 9)) and f.rendered_by(1) == []
        assert status["waiting"] is None

        farm_job = submit(client, frames="1-2", tags=["gpu", "farm-b"])
        wait_until(lambda: client.get(f"/render/{farm_job}").json()["waiting"], 10, "a reason")
        status = client.get(f"/render/{farm_job}").json()
        assert status["state"] == "queued" and status["frames"]["done"] == 0
        assert "waiting for a node with the tags farm-b, gpu" in status["waiting"]
        assert "render-node --tags farm-b,gpu" in status["waiting"]
        f.start_node(extra=("--tags", "gpu,farm-b"))  # the node it waits for joins
        status = wait_job(client, farm_job, timeout=60)
        assert status["state"] == "completed" and status["waiting"] is None
        assert sorted(f.rendered_by(2)) == [1, 2]

        resp = client.post("/render", json={"scene": "demo.blend", "frames": "1",
                                             "tags": ["GPU!"]})  # fmt: skip
        assert resp.status_code == 422
