"""Missing files through real services and the fake Blender (which runs the node's asset
check against a stand-in bpy): frames fail naming them, or render with warnings when the job
allows it; the warnings reach GET /render/ID."""

from __future__ import annotations

from pathlib import Path

from tests.integration.farm_procs import farm
from tests.orch_helpers import wait_job


def test_frames_of_a_scene_missing_a_texture_fail_unless_the_job_allows_it(
    tmp_path: Path,
) -> None:
    present = tmp_path / "wood.png"
    present.write_bytes(b"png")
    absent = tmp_path / "checker.png"
    with farm(tmp_path) as f:
        f.start_orchestrator()
        f.start_node(images=f"{present},{absent}")
        client = f.client()
        f.wait_nodes(client, 1)

        refused = client.post("/render", json={"scene": "demo.blend", "frames": "1-2"}).json()
        job = wait_job(client, refused["id"])
        assert job["state"] == "failed" and job["frames"]["failed"] == 2
        error = job["failed_frames"][0]["error"]
        assert f"missing image {absent}" in error and "wood.png" not in error
        assert f.rendered() == {}  # stopped before any frame

        allowed = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-2", "allow_missing": True}
        ).json()
        job = wait_job(client, allowed["id"])
        assert job["state"] == "completed", job
        warnings = job["assets"]["warnings"]
        assert len(warnings) == 1 and f"missing image {absent}" in warnings[0]
