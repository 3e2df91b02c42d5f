"""GET /jobs/{id}/frames.tar on a real node with the fake Blender: content, errors, token."""

from __future__ import annotations

import io
import tarfile

import httpx

from farm_common.protocol import frame_name
from tests.integration.conftest import Node, StartNode


def members(content: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        out = {}
        for info in tar.getmembers():
            assert info.isreg()
            data = tar.extractfile(info)
            assert data is not None
            out[info.name] = data.read()
        return out


def test_archive_holds_the_asked_frames_as_the_single_frame_endpoint_serves_them(
    node: Node,
) -> None:
    job_id = node.submit("1-5")
    assert node.wait(job_id)["state"] == "completed"
    response = node.client.get(f"/jobs/{job_id}/frames.tar", params={"frames": "2-3,5"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-tar"
    assert int(response.headers["content-length"]) == len(response.content)
    got = members(response.content)
    assert list(got) == ["frame_00002.png", "frame_00003.png", "frame_00005.png"]
    for frame in (2, 3, 5):
        single = node.client.get(f"/jobs/{job_id}/frames/{frame}")
        assert got[frame_name(frame, ".png")] == single.content


def test_archive_refuses_bad_specs_foreign_frames_and_unknown_jobs(node: Node) -> None:
    job_id = node.submit("1-3")
    node.wait(job_id)
    cases = {
        "10-1": (400, "reversed"),
        "1,x": (400, "cannot read"),
        "1-501": (400, "at most 500"),
        "3-4": (400, "not part of job"),
    }
    for spec, (status, words) in cases.items():
        response = node.client.get(f"/jobs/{job_id}/frames.tar", params={"frames": spec})
        assert response.status_code == status, (spec, response.text)
        assert response.json()["error"] == "bad_request" and words in response.json()["detail"]
    unknown = node.client.get("/jobs/nosuchjob/frames.tar", params={"frames": "1"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    assert "no job" in unknown.json()["detail"]
    no_spec = node.client.get(f"/jobs/{job_id}/frames.tar")
    assert no_spec.status_code == 422 and no_spec.json()["error"] == "invalid_request"


def test_archive_of_frames_not_done_yet_is_a_409_that_names_them(start_node: StartNode) -> None:
    node = start_node(env={"FAKE_BLENDER_SECONDS": "0.5"})
    job_id = node.submit("1-4")
    node.wait_frame(job_id, 1, "done")
    response = node.client.get(f"/jobs/{job_id}/frames.tar", params={"frames": "1-4"})
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["error"] == "conflict" and "frames 2-4" in body["detail"]
    done = node.client.get(f"/jobs/{job_id}/frames.tar", params={"frames": "1"})
    assert list(members(done.content)) == ["frame_00001.png"]


def test_archive_needs_the_token(start_node: StartNode) -> None:
    node = start_node(token="t0ken")
    job_id = node.submit("1")
    node.wait(job_id)
    url = f"{node.url}/jobs/{job_id}/frames.tar"
    missing = httpx.get(url, params={"frames": "1"})
    assert missing.status_code == 401 and missing.json()["error"] == "unauthorized"
    wrong = httpx.get(url, params={"frames": "1"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 403 and wrong.json()["error"] == "forbidden"
    assert node.client.get(url, params={"frames": "1"}).status_code == 200
