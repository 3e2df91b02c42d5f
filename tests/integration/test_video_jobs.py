"""Video jobs (POST /render/ID/video): a job of the farm that encodes another job's frames to
an mp4 once that job completed; it fails with it, is cancelled, requeued and deleted like any."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.integration.test_orchestrator_fake_nodes import farm_of, node_urls
from tests.integration.test_video import needs_ffmpeg, probe
from tests.orch_helpers import fast_settings, orchestrator_in_thread, wait_job


def render(client: httpx.Client, frames: str, **body: object) -> str:
    resp = client.post("/render", json={"scene": "demo.blend", "frames": frames, **body})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def video_of(client: httpx.Client, job_id: str, **body: object) -> str:
    resp = client.post(f"/render/{job_id}/video", json=body)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])


def saved_video(client: httpx.Client, job_id: str, tmp_path: Path) -> dict[str, str]:
    resp = client.get(f"/render/{job_id}/video.mp4")
    assert resp.status_code == 200 and resp.headers["content-type"] == "video/mp4"
    path = tmp_path / f"{job_id}.mp4"
    path.write_bytes(resp.content)
    return probe(path)


@needs_ffmpeg
def test_a_video_job_waits_for_its_render_then_encodes_the_frames_asked_for(
    tmp_path: Path,
) -> None:
    with farm_of(tmp_path, [FakeNode("n0", slots=1, seconds_per_frame=0.15)]) as (_, client):
        shot = render(client, "1-8", batch_size=2)
        video = video_of(client, shot, fps=12)
        status = client.get(f"/render/{video}").json()
        assert (status["kind"], status["source"], status["fps"]) == ("video", shot, 12)
        assert status["after"] == [shot] and status["state"] == "queued"
        assert status["waiting"].startswith("waiting for the jobs it comes after to complete")
        status = wait_job(client, video, timeout=60)
        assert status["state"] == "completed", status
        assert client.get(f"/render/{shot}").json()["state"] == "completed"
        assert status["frames"] == {"total": 8, "done": 8, "failed": 0, "rendering": 0}
        assert status["video"] and status["video_url"] == f"/render/{video}/video.mp4"
        stream = saved_video(client, video, tmp_path)
        assert (stream["codec_name"], stream["nb_read_frames"]) == ("h264", "8")
        assert stream["r_frame_rate"] == "12/1"

        # Of a job that completed: at once, and only the frames asked for, in order.
        part = video_of(client, shot, frames="2-4,7", fps=30)
        status = wait_job(client, part, timeout=60)
        assert status["state"] == "completed" and status["after"] == []
        stream = saved_video(client, part, tmp_path)
        assert (stream["nb_read_frames"], stream["r_frame_rate"]) == ("4", "30/1")
        kinds = {j["id"]: j["kind"] for j in client.get("/render").json()}
        assert kinds == {shot: "render", video: "video", part: "video"}


@needs_ffmpeg
def test_a_video_job_fails_with_its_render_and_says_what_is_missing(tmp_path: Path) -> None:
    node = FakeNode("n0", slots=1, seconds_per_frame=0.05, fail_frames={3})
    with farm_of(tmp_path, [node]) as (_, client):
        shot = render(client, "1-4")
        video = video_of(client, shot)
        status = wait_job(client, video, timeout=60)
        assert status["state"] == "failed"
        assert f"job {shot}, which it comes after, failed" in status["error"]
        assert status["frames"]["failed"] == 4 and not status["video"]

        # Asked of the failed job: a 409 naming the frame it lacks, unless only frames it has.
        resp = client.post(f"/render/{shot}/video", json={})
        assert resp.status_code == 409 and "frames 3 of it are not rendered" in resp.text
        rest = video_of(client, shot, frames="1-2,4")
        assert wait_job(client, rest, timeout=60)["state"] == "completed"


@needs_ffmpeg
def test_video_jobs_are_cancelled_requeued_and_deleted_like_renders(tmp_path: Path) -> None:
    with farm_of(tmp_path, [FakeNode("n0", slots=1, seconds_per_frame=0.05)]) as (_, client):
        shot = render(client, "1-3")
        waiting = video_of(client, shot, after=[render(client, "10-40", batch_size=1)])
        assert client.delete(f"/render/{waiting}").json()["state"] == "cancelled"
        assert wait_job(client, shot, timeout=60)["state"] == "completed"

        # A cancelled video job requeued encodes again (and its history says so).
        resp = client.post(f"/render/{waiting}/requeue", json={"failed": True})
        assert resp.status_code == 202, resp.text
        assert resp.json()["requeued"] == "1-3"
        status = wait_job(client, waiting, timeout=90)
        assert status["state"] == "completed" and status["video"], status
        assert [r["asked"] for r in status["requeues"]] == ["video"]

        gone = client.post(f"/render/{waiting}/delete").json()
        assert gone["deleted"] and gone["files"] == 1
        assert client.get(f"/render/{waiting}").status_code == 404
        assert client.get(f"/render/{shot}").json()["state"] == "completed"


def test_video_requests_that_cannot_be_met_are_refused(tmp_path: Path) -> None:
    with farm_of(tmp_path, [FakeNode("n0", slots=1, seconds_per_frame=0.01)]) as (_, client):
        shot = render(client, "1-3")
        cases = [
            (f"/render/{shot}/video", {"frames": "2-9"}, 400, "frames 4, 5, 6, 7, 8, 9 are not"),
            (f"/render/{shot}/video", {"fps": 0}, 422, "fps"),
            (f"/render/{shot}/video", {"after": ["0123456789ab"]}, 400, "no job 0123456789ab"),
            ("/render/0123456789ab/video", {}, 404, "no render job"),
        ]
        for path, body, code, says in cases:
            resp = client.post(path, json=body)
            assert (resp.status_code, says in resp.text) == (code, True), (body, resp.text)
        video = video_of(client, shot)
        resp = client.post(f"/render/{video}/video", json={})
        assert (
            resp.status_code == 400
            and f"give the render job whose frames to encode ({shot})" in resp.text
        )


@needs_ffmpeg
def test_a_waiting_video_job_survives_an_orchestrator_restart(tmp_path: Path) -> None:
    nodes = [FakeNode("n0", slots=1, seconds_per_frame=0.05)]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 1))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        shot = render(client, "1-60", batch_size=1)
        video = video_of(client, shot)
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 1))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert client.get(f"/render/{video}").json()["state"] == "queued"
        status = wait_job(client, video, timeout=90)
        assert status["state"] == "completed" and status["video"], status
        assert saved_video(client, video, tmp_path)["nb_read_frames"] == "60"
