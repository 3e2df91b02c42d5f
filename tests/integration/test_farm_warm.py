"""A farm of bpy nodes (the stand-in bpy): a job's batches after the first find the scene
loaded, so a one-slot node opens the scene once however many batches it renders."""

from __future__ import annotations

from pathlib import Path

from tests.integration.farm_procs import farm, submit
from tests.orch_helpers import wait_job

FAKE_PYTHON = Path(__file__).resolve().parents[1] / "fake_bpy" / "python"


def opens(trace: Path) -> list[str]:
    return [line for line in trace.read_text().splitlines() if line.split()[1] == "open"]


def test_a_jobs_batches_on_a_bpy_node_share_one_loaded_scene(tmp_path: Path) -> None:
    trace = tmp_path / "trace.log"
    trace.touch()
    with farm(tmp_path) as f:
        f.start_orchestrator()
        f.start_node(blender=f"bpy:{FAKE_PYTHON}", STARTUP="0.5", TRACE=str(trace))
        client = f.client()
        f.wait_nodes(client, 1)
        nodes = client.get("/nodes").json()
        assert nodes[0]["engine"] == "bpy" and nodes[0]["devices"] == ["CPU"], nodes
        job_id = submit(client, frames="1-24", batch_size=4)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert len(status["batches"]) == 6
        assert len(opens(trace)) == 1, trace.read_text()
        assert sorted(f.rendered()) == list(range(1, 25))

        # Another job of the same scene is another job: a fresh worker.
        second = submit(client, frames="1-4", batch_size=2)
        assert wait_job(client, second, timeout=60)["state"] == "completed"
        assert len(opens(trace)) == 2
