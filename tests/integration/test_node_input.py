"""Scene uploads and bad input: every mistake gets a 4xx that says what to fix."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Iterator

import pytest

from tests.integration.conftest import SCENES, Node, StartNode

DEMO = (SCENES / "demo.blend").read_bytes()
DEMO_SHA = hashlib.sha256(DEMO).hexdigest()


def test_uploaded_scene_is_stored_by_hash_and_renders(node: Node) -> None:
    assert node.client.head(f"/scenes/{DEMO_SHA}").status_code == 404
    response = node.client.put(f"/scenes/{DEMO_SHA}", content=DEMO)
    assert response.status_code == 201, response.text
    assert response.json() == {"scene": f"sha256:{DEMO_SHA}", "size": len(DEMO)}
    assert node.client.head(f"/scenes/{DEMO_SHA}").status_code == 200
    assert (node.data_dir / "scenes" / f"{DEMO_SHA}.blend").read_bytes() == DEMO
    job = node.wait(node.submit("1", scene=f"sha256:{DEMO_SHA}"))
    assert job["state"] == "completed"


def test_gzip_compressed_blend_is_accepted(node: Node) -> None:
    body = gzip.compress(DEMO[:4096])
    sha = hashlib.sha256(body).hexdigest()
    assert node.client.put(f"/scenes/{sha}", content=body).status_code == 201


def test_upload_with_the_wrong_hash_is_400_and_not_stored(node: Node) -> None:
    wrong = "0" * 64
    response = node.client.put(f"/scenes/{wrong}", content=DEMO)
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "sha256 is" in response.json()["detail"]
    assert node.client.head(f"/scenes/{wrong}").status_code == 404
    assert not list((node.data_dir / "scenes").glob("*"))


def test_upload_of_a_non_blend_file_is_refused(node: Node) -> None:
    body = b"<html>not a scene</html>"
    response = node.client.put(f"/scenes/{hashlib.sha256(body).hexdigest()}", content=body)
    assert response.status_code == 415
    assert "not a .blend" in response.json()["detail"]


def test_upload_past_max_upload_mb_is_413_even_without_content_length(
    start_node: StartNode,
) -> None:
    node = start_node(max_upload_mb=0.1)

    def chunks() -> Iterator[bytes]:  # chunked: no Content-Length to trust
        for i in range(0, len(DEMO), 16384):
            yield DEMO[i : i + 16384]

    response = node.client.put(f"/scenes/{DEMO_SHA}", content=chunks())
    assert response.status_code == 413
    assert "--max-upload-mb" in response.json()["detail"]
    assert node.client.head(f"/scenes/{DEMO_SHA}").status_code == 404
    with_length = node.client.put(f"/scenes/{DEMO_SHA}", content=DEMO)
    assert with_length.status_code == 413
    assert node.client.head(f"/scenes/{DEMO_SHA}").status_code == 404


def test_malformed_hash_in_the_url_is_400(node: Node) -> None:
    assert node.client.put("/scenes/xyz", content=DEMO).status_code == 400
    assert node.client.head("/scenes/xyz").status_code == 400


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"scene": "../scenes/demo.blend", "frames": "1"}, 400, "'..'"),
        ({"scene": "/etc/passwd", "frames": "1"}, 400, "relative"),
        ({"scene": "nope.blend", "frames": "1"}, 404, "no scene 'nope.blend'"),
        ({"scene": "sha256:" + "a" * 64, "frames": "1"}, 404, "upload it first"),
        ({"scene": "sha256:zz", "frames": "1"}, 400, "not a sha256"),
        ({"scene": "demo.blend", "frames": "5-1"}, 400, "reversed"),
        ({"scene": "demo.blend", "frames": "1-200000"}, 400, "more than 100000"),
        ({"scene": "demo.blend", "frames": "a-b"}, 400, "cannot read"),
        ({"scene": "demo.blend", "frames": "1", "format": "GIF"}, 400, "unknown image format"),
        ({"scene": "demo.blend"}, 422, "frames"),
    ],
)
def test_bad_job_requests_get_a_4xx_that_says_what_to_fix(
    node: Node, body: dict, status: int, words: str
) -> None:
    response = node.client.post("/jobs", json=body)
    assert response.status_code == status, response.text
    assert set(response.json()) == {"error", "detail"}
    assert words in response.json()["detail"]
    assert node.client.get("/jobs").json()["jobs"] == []


def test_info_reports_versions_slots_and_cpus(start_node: StartNode) -> None:
    node = start_node(slots=2, threads=1)
    info = node.client.get("/info").json()
    assert info["version"] == "0.1.0"
    assert info["blender_version"] == "3.4.1"
    assert info["slots"] == 2 and info["busy"] == 0 and info["threads"] == 1
    assert info["cpu_count"] >= 1


def test_health_is_ok(node: Node) -> None:
    assert node.client.get("/health").json() == {"status": "ok"}


def test_token_guards_every_endpoint_but_health(start_node: StartNode) -> None:
    node = start_node(token="s3cret")
    anonymous = {"Authorization": ""}
    assert node.client.get("/health", headers=anonymous).status_code == 200
    for method, path in [
        ("GET", "/info"),
        ("GET", "/jobs"),
        ("POST", "/jobs"),
        ("GET", "/jobs/abc"),
        ("HEAD", f"/scenes/{DEMO_SHA}"),
        ("GET", "/openapi.json"),
    ]:
        response = node.client.request(method, path, headers=anonymous)
        assert response.status_code == 401, (method, path)
        wrong = node.client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 403, (method, path)
    missing = node.client.get("/info", headers=anonymous)
    assert missing.json()["error"] == "unauthorized"
    assert node.client.get("/info").status_code == 200
    assert node.wait(node.submit("1"))["state"] == "completed"


def test_develop_needs_its_images_on_the_node_and_one_for_each_frame(node: Node) -> None:
    image = b"not yet pushed"
    sha = hashlib.sha256(image).hexdigest()
    body = {"scene": "demo.blend", "frames": "1", "develop": {"1": sha}}
    response = node.client.post("/jobs", json=body)
    assert response.status_code == 404
    assert "lacks 1 image(s) to develop" in response.json()["detail"]
    assert node.client.put(f"/files/{sha}", content=image).status_code == 201
    response = node.client.post("/jobs", json={**body, "frames": "1-2"})
    assert response.status_code == 400
    assert "an image for each frame" in response.json()["detail"]
    assert node.client.post("/jobs", json=body).status_code == 202
