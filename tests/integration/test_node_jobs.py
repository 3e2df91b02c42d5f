"""Jobs on a node with the fake Blender: rendering, queueing, failures, cancel, timeouts."""

from __future__ import annotations

import time

from tests.integration.conftest import Node, StartNode, group_alive

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def frames_by_number(job: dict) -> dict[int, dict]:
    return {f["frame"]: f for f in job["frames"]}


def test_renders_frames_and_serves_each_as_png(node: Node) -> None:
    job_id = node.submit("1-3")
    job = node.wait(job_id)
    assert job["state"] == "completed", job
    assert job["progress"] == 1.0
    assert job["blender_version"] == "3.4.1"
    assert [f["state"] for f in job["frames"]] == ["done"] * 3
    assert all(f["seconds"] > 0 for f in job["frames"])
    for frame in (1, 2, 3):
        response = node.client.get(f"/jobs/{job_id}/frames/{frame}")
        assert response.status_code == 200
        assert response.headers["content-type"] == "image/png"
        assert response.content.startswith(PNG_SIGNATURE)


def test_job_status_has_the_documented_fields(node: Node) -> None:
    job = node.wait(node.submit("2,4"))
    for key in ("id", "state", "scene", "frames", "progress", "created", "started", "finished"):
        assert key in job
    assert job["scene"] == "demo.blend"
    assert [f["frame"] for f in job["frames"]] == [2, 4]
    assert "error" not in job


def test_job_list_shows_submitted_jobs(node: Node) -> None:
    job_id = node.submit("1")
    node.wait(job_id)
    jobs = node.client.get("/jobs").json()["jobs"]
    assert [j["id"] for j in jobs] == [job_id]
    assert jobs[0]["counts"]["done"] == 1


def test_old_unquoted_saved_lines_count_as_done(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_OLD_SAVED": "1"})
    job = node.wait(node.submit("1-2"))
    assert job["state"] == "completed", job


def test_second_job_waits_queued_while_the_only_slot_is_busy(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_SECONDS": "0.3"})
    first = node.submit("1-3")
    node.wait(first, states=("running",))
    second = node.submit("1")
    assert node.job(second)["state"] == "queued"
    info = node.client.get("/info").json()
    assert info["busy"] == 1 and info["jobs"]["queued"] == 1
    assert node.wait(first)["state"] == "completed"
    assert node.wait(second)["state"] == "completed"
    assert node.job(second)["started"] >= node.job(first)["finished"]


def test_two_slots_run_two_jobs_at_once(start_node: StartNode) -> None:
    node = start_node(slots=2, env={"FAKE_BLENDER_SECONDS": "0.3"})
    jobs = [node.submit("1-2"), node.submit("1-2")]
    for job_id in jobs:
        node.wait(job_id, states=("running",))
    assert node.client.get("/info").json()["busy"] == 2


def test_cancel_kills_a_hanging_blender_group_within_two_seconds(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_HANG": "2"})
    job_id = node.submit("1-4")
    node.wait_frame(job_id, 2, "rendering")
    pgid = node.blender_pgid(job_id)
    assert group_alive(pgid)
    began = time.monotonic()
    response = node.client.delete(f"/jobs/{job_id}")
    assert response.status_code == 200
    assert time.monotonic() - began < 2.0
    assert not group_alive(pgid)
    job = node.job(job_id)
    assert job["state"] == "cancelled"
    frames = frames_by_number(job)
    assert frames[1]["state"] == "done"
    assert frames[2]["state"] == "failed" and frames[2]["error"] == "cancelled"


def test_cancel_a_queued_job_never_starts_it(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_HANG": "1"})
    running = node.submit("1")
    node.wait(running, states=("running",))
    queued = node.submit("1")
    assert node.client.delete(f"/jobs/{queued}").json()["state"] == "cancelled"
    assert "started" not in node.job(queued)
    node.client.delete(f"/jobs/{running}")


def test_delete_a_finished_job_removes_its_files(node: Node) -> None:
    job_id = node.submit("1")
    node.wait(job_id)
    job_dir = node.data_dir / "jobs" / job_id
    assert job_dir.is_dir()
    response = node.client.delete(f"/jobs/{job_id}")
    assert response.json()["removed"] is True
    assert not job_dir.exists()
    assert node.client.get(f"/jobs/{job_id}").status_code == 404


def test_crash_mid_batch_keeps_earlier_frames_and_fails_the_rest(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_CRASH": "3"})
    job = node.wait(node.submit("1-5"))
    assert job["state"] == "failed"
    frames = frames_by_number(job)
    assert [frames[f]["state"] for f in (1, 2)] == ["done", "done"]
    assert "SIGSEGV while rendering frame 3" in frames[3]["error"]
    assert "before rendering frame 4" in frames[4]["error"]
    assert frames[5]["state"] == "failed"
    assert "3 of 5 frames failed" in job["error"]
    assert node.client.get(f"/jobs/{job['id']}/frames/2").status_code == 200


def test_exit_zero_without_an_output_file_fails_the_frame(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_NO_OUTPUT": "2"})
    job = node.wait(node.submit("1-3"))
    frames = frames_by_number(job)
    assert frames[1]["state"] == "done" and frames[3]["state"] == "done"
    assert frames[2]["state"] == "failed"
    assert "no file" in frames[2]["error"]
    assert job["state"] == "failed"
    assert node.client.get(f"/jobs/{job['id']}/frames/2").status_code == 404


def test_error_without_saved_fails_the_frame_with_blenders_error(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_FAIL": "2"})
    job = node.wait(node.submit("1-3"))
    frames = frames_by_number(job)
    assert frames[2]["state"] == "failed"
    assert "CUDA error: Out of memory" in frames[2]["error"]
    assert frames[1]["state"] == frames[3]["state"] == "done"
    assert "CUDA error" in job["error"]


def test_frame_timeout_kills_the_stuck_frame_and_renders_the_rest(start_node: StartNode) -> None:
    node = start_node(frame_timeout=0.5, env={"FAKE_BLENDER_HANG": "2"})
    job_id = node.submit("1-4")
    node.wait_frame(job_id, 2, "rendering")
    pgid = node.blender_pgid(job_id)
    job = node.wait(job_id, timeout=10)
    frames = frames_by_number(job)
    assert frames[2]["state"] == "failed"
    assert "no progress for 0.5 s" in frames[2]["error"]
    # Blender is started again for the frames after the stuck one.
    assert [frames[f]["state"] for f in (1, 3, 4)] == ["done", "done", "done"]
    assert not group_alive(pgid)


def test_frame_that_is_not_rendered_yet_is_404(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_HANG": "1"})
    job_id = node.submit("1-2")
    node.wait_frame(job_id, 1, "rendering")
    response = node.client.get(f"/jobs/{job_id}/frames/1")
    assert response.status_code == 404
    assert "not rendered" in response.json()["detail"]
    assert node.client.get(f"/jobs/{job_id}/frames/99").status_code == 404
    node.client.delete(f"/jobs/{job_id}")


def test_a_saved_frame_is_served_while_blender_goes_on_with_the_next(
    start_node: StartNode,
) -> None:
    node = start_node(env={"FAKE_BLENDER_HANG": "2"})
    job_id = node.submit("1-2")
    node.wait_frame(job_id, 2, "rendering")
    response = node.client.get(f"/jobs/{job_id}/frames/1")
    assert response.status_code == 200
    assert response.content.startswith(PNG_SIGNATURE)
    node.client.delete(f"/jobs/{job_id}")


def test_log_endpoint_returns_blenders_output(node: Node) -> None:
    job_id = node.submit("1")
    node.wait(job_id)
    response = node.client.get(f"/jobs/{job_id}/log")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "Saved: '" in response.text
    assert "--disable-autoexec" in response.text


def test_missing_blender_fails_the_job_with_a_message(start_node: StartNode) -> None:
    node = start_node(blender="/nonexistent/blender")
    job = node.wait(node.submit("1"))
    assert job["state"] == "failed"
    assert "cannot start Blender" in job["frames"][0]["error"]


def test_unknown_job_is_404_and_malformed_id_is_400(node: Node) -> None:
    assert node.client.get("/jobs/abc123").status_code == 404
    assert node.client.get("/jobs/a.b").status_code == 400
    assert node.client.delete("/jobs/nope").status_code == 404


def test_error_then_saved_of_a_broken_frame_fails_it(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_BROKEN": "1"})
    job = node.wait(node.submit("1-2"))
    frames = frames_by_number(job)
    assert frames[1]["state"] == "failed"
    assert "illegal memory access" in frames[1]["error"]
    assert frames[2]["state"] == "done"


def test_metrics_count_rendered_and_failed_frames_and_busy_slots(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_FAIL": "2"})
    node.wait(node.submit("1-3"))
    text = node.client.get("/metrics").text
    assert "farm_node_frames_rendered_total 2.0" in text
    assert "farm_node_frames_failed_total 1.0" in text
    assert "farm_node_slots 1.0" in text
    assert "farm_node_busy_slots 0.0" in text
    assert "farm_node_frame_seconds_count 2.0" in text


def test_the_submit_answer_gives_the_version_to_wait_on(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_SECONDS": "0.4"})
    created = node.client.post("/jobs", json={"scene": "demo.blend", "frames": "1-2"}).json()
    assert created["version"] in ("queued/0/0", "running/0/0"), created
    start = time.monotonic()
    changed = node.client.get(
        f"/jobs/{created['id']}", params={"wait": 5, "since": created["version"]}
    ).json()
    assert changed["version"] != created["version"]
    assert time.monotonic() - start < 4  # answered at the change, not after 5 s
    node.wait(created["id"])


def test_status_waits_for_a_change_when_asked_to(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_SECONDS": "0.4", "FAKE_BLENDER_HANG": "3"})
    job_id = node.submit("1-3")
    job = node.job(job_id)
    start = time.monotonic()
    changed = node.client.get(f"/jobs/{job_id}", params={"wait": 5, "since": job["version"]})
    assert changed.status_code == 200
    assert changed.json()["version"] != job["version"]
    assert time.monotonic() - start < 4  # answered when frame 1 ended, not after 5 s
    node.wait(job_id, states=("running",))
    while frames_by_number(node.job(job_id))[2]["state"] != "done":
        time.sleep(0.05)
    hanging = node.job(job_id)  # frame 3 hangs: nothing changes any more
    start = time.monotonic()
    same = node.client.get(f"/jobs/{job_id}", params={"wait": 0.5, "since": hanging["version"]})
    assert same.json()["version"] == hanging["version"]
    assert time.monotonic() - start >= 0.45
    bad = node.client.get(f"/jobs/{job_id}", params={"wait": 3600, "since": "x"})
    assert bad.status_code == 422 and "wait" in bad.text
    node.client.delete(f"/jobs/{job_id}")
