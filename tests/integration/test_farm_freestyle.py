"""A Freestyle scene on a farm whose nodes refuse Freestyle: the job ends failed, every frame
listed with the node's message saying how to fix it, once each node has refused one batch
(the node says it refuses the scene), not after three tries of every batch. (A node that
allows Freestyle is tested in test_node_blender_sandbox.py.)"""

from __future__ import annotations

from pathlib import Path

from tests.integration.farm_procs import farm, submit
from tests.orch_helpers import wait_job


def test_a_freestyle_job_fails_clearly_on_nodes_that_refuse_it(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(2):
            f.start_node(FREESTYLE="1")
        client = f.client()
        f.wait_nodes(client, 2)
        job_id = submit(client, frames="1-6", batch_size=2)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "failed", status
        assert status["frames"]["failed"] == 6 and status["frames"]["done"] == 0
        assert "Freestyle" in status["error"] and "--allow-freestyle" in status["error"]
        for failed in status["failed_frames"]:
            assert "--allow-freestyle" in failed["error"], failed
        assert sum(f.rendered().values()) == 0  # Blender never got to render a frame
        # Each node's one slot took one batch; the others never left the queue.
        assert len(status["batches"]) <= 2, status["batches"]
        assert all(b["attempts"] == 1 and b["node"] for b in status["batches"])
