"""Requeue on a farm of real processes (fake Blender): failed frames rendered again on the
nodes they failed on, done frames replaced, a cancelled job resumed, each requeue in the
job's history, and every mistake a 4xx that says what to fix."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import OpenImageIO as oiio
import pytest

from farm_common.protocol import frame_name
from tests.integration.farm_procs import farm, submit
from tests.integration.test_tiles_real import BLENDER, demo_with, needs_blender
from tests.orch_helpers import wait_job, wait_until


def outputs(tmp_path: Path, job_id: str) -> dict[str, float]:
    folder = tmp_path / "orch" / "renders" / job_id
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def test_failed_frames_render_again_on_the_nodes_they_failed_on(tmp_path: Path) -> None:
    failing = tmp_path / "failing.txt"
    failing.write_text("3")
    with farm(tmp_path) as f:
        client = f.start_farm(3, FAIL_FILE=str(failing))
        job_id = submit(client, frames="1-4", batch_size=1)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "failed"
        assert status["failed_frames"][0]["frame"] == 3
        banned = set(status["failed_frames"][0]["nodes"])
        assert len(banned) == 3  # every node is banned from it
        first_batches = len(status["batches"])

        failing.write_text("")  # what broke the frame is mended
        resp = client.post(f"/render/{job_id}/requeue", json={"failed": True})
        assert resp.status_code == 202, resp.text
        assert resp.json() | {"state": None} == {
            "id": job_id, "state": None, "status_url": f"/render/{job_id}", "requeued": "3",
            "frames": 1,
        }  # fmt: skip
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status.get("error")
        assert status["frames"] == {"total": 4, "done": 4, "failed": 0, "rendering": 0}
        assert status["failed_frames"] == [] and "error" not in status
        (again,) = client.get(f"/render/{job_id}/frames").json()["frames"][2:3]
        assert again["frame"] == 3 and again["attempts"] == 0  # its count started over
        # Saved once (the failures saved nothing), on a node it had failed on: they all had.
        assert f.rendered()[3] == 1
        assert status["batches"][-1]["node"] in banned
        assert f.rendered()[1] == 1  # the good frames are kept
        # The history: the failed batches stay listed, the requeue and its new batch beside.
        assert len(status["batches"]) == first_batches + 1
        (entry,) = status["requeues"]
        assert (entry["asked"], entry["frames"], entry["count"]) == ("failed", "3", 1)


def test_done_frames_asked_for_are_rendered_again_and_replaced(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(2)
        job_id = submit(client, frames="1-6", video=False)
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        before = outputs(tmp_path, job_id)
        resp = client.post(f"/render/{job_id}/requeue", json={"frames": "2-3"})
        assert resp.status_code == 202, resp.text
        assert resp.json()["requeued"] == "2-3" and resp.json()["state"] == "queued"
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed" and status["frames"]["done"] == 6
        after = outputs(tmp_path, job_id)
        assert sorted(after) == sorted(before)
        changed = sorted(name for name in after if after[name] != before[name])
        assert changed == [frame_name(2, ".png"), frame_name(3, ".png")]
        assert [f.rendered()[n] for n in range(1, 7)] == [1, 2, 2, 1, 1, 1]
        assert status["requeues"][0]["asked"] == "2-3"


def test_a_cancelled_job_resumes_where_it_stopped(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(2, SECONDS="0.4")
        job_id = submit(client, frames="1-12", batch_size=1)
        wait_until(lambda: client.get(f"/render/{job_id}").json()["frames"]["done"] >= 3, 30,
                   "three frames")  # fmt: skip
        assert client.delete(f"/render/{job_id}").json()["state"] == "cancelled"
        done_before = client.get(f"/render/{job_id}").json()["frames"]["done"]
        assert done_before < 12
        resp = client.post(f"/render/{job_id}/requeue", json={"failed": True})
        assert resp.status_code == 202, resp.text
        assert resp.json()["frames"] == 12 - done_before
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status.get("error")
        assert status["frames"]["done"] == 12
        # Frames collected before the cancel were not rendered again.
        assert sum(f.rendered().values()) <= 12 + 2  # at most one frame in flight a node


def test_requeue_mistakes_are_4xx_that_say_what_to_fix(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(1)
        job_id = submit(client, frames="1-3")
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"

        def post(body: object, job: str = job_id) -> tuple[int, str]:
            resp = client.post(f"/render/{job}/requeue", json=body)
            return resp.status_code, resp.text

        status, text = post({"failed": True})
        assert status == 409 and "no failed frame" in text
        status, text = post({"frames": "2-9"})
        assert status == 400 and "frames 4, 5, 6, 7, 8, 9 are not frames of job" in text
        status, text = post({"frames": "x"})
        assert status == 400
        assert post({})[0] == 422 and post({"frames": "1", "failed": True})[0] == 422
        assert post({"failed": True}, job="0123456789ab")[0] == 404
        assert client.get(f"/render/{job_id}").json()["requeues"] == []


def test_a_requeue_survives_a_restart_of_the_orchestrator(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(1, SECONDS="0.3")
        first = f.orchestrator
        assert first is not None
        job_id = submit(client, frames="1-4")
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        assert client.post(f"/render/{job_id}/requeue", json={"frames": "1-4"}).status_code == 202
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(5)
        f.start_orchestrator()
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed" and status["frames"]["done"] == 4
        assert len(status["requeues"]) == 1


@pytest.mark.blender
@needs_blender
def test_a_frame_requeued_on_real_blender_is_rendered_again_the_same(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        demo_with(f.scenes / "real.blend", "s.render.dither_intensity = 0.0")  # repeatable
        f.start_orchestrator()
        f.start_node(blender=BLENDER, extra=("--threads", "2"))
        client = f.client()
        f.wait_nodes(client, 1)
        job_id = submit(client, scene="real.blend", frames="1-2")
        status = wait_job(client, job_id, timeout=120)
        assert status["state"] == "completed", status.get("error")
        frame = tmp_path / "orch" / "renders" / job_id / frame_name(2, ".png")
        first = oiio.ImageBuf(str(frame)).get_pixels(oiio.FLOAT)
        written = frame.stat().st_mtime_ns
        assert client.post(f"/render/{job_id}/requeue", json={"frames": "2"}).status_code == 202
        assert wait_job(client, job_id, timeout=120)["state"] == "completed"
        assert frame.stat().st_mtime_ns != written  # rendered again, and the same image
        assert (oiio.ImageBuf(str(frame)).get_pixels(oiio.FLOAT) == first).all()


def test_an_ended_job_is_deleted_with_its_frames(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client = f.start_farm(1, SECONDS="0.3")
        job_id = submit(client, frames="1-3")
        running = submit(client, frames="10-40")
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        folder = tmp_path / "orch" / "renders" / job_id
        assert len(list(folder.iterdir())) == 3
        resp = client.post(f"/render/{job_id}/delete")
        assert resp.status_code == 200, resp.text
        assert resp.json()["files"] == 3 and resp.json()["bytes"] > 0
        assert client.get(f"/render/{job_id}").status_code == 404 and not folder.exists()
        assert job_id not in [j["id"] for j in client.get("/render").json()]
        resp = client.post(f"/render/{running}/delete")
        assert resp.status_code == 409 and "cancel it first" in resp.text
        assert client.post("/render/0123456789ab/delete").status_code == 404
