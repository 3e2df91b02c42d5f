"""Every 4xx of both services is the one JSON error shape and says what to fix; and what the
fuzzer (test_fuzz_api.py) found, pinned by name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from farm_common.errors import install_error_handlers
from orchestrator.api.app import create_app as create_orchestrator
from render_node.api import create_app as create_node
from render_node.settings import NodeSettings
from tests.integration.conftest import FAKE_BLENDER, SCENES
from tests.orch_helpers import fast_settings
from tests.servers import serve_app


@pytest.fixture(params=["node", "orchestrator"])
def service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, httpx.Client]]:
    if request.param == "node":
        app = create_node(
            NodeSettings(data_dir=tmp_path / "node", scenes_dir=SCENES, blender=str(FAKE_BLENDER))
        )
    else:
        app = create_orchestrator(fast_settings(tmp_path, []))
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield request.param, client


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"] == code, body
    for word in words:
        assert word in body["detail"], body
    return str(body["detail"])


def test_unknown_endpoint_is_a_404_pointing_at_the_docs(service: tuple[str, httpx.Client]) -> None:
    _, client = service
    assert_error(client.get("/no/such/thing"), 404, "not_found", "/no/such/thing", "/docs")


def test_wrong_method_is_a_405_naming_the_allowed_ones(service: tuple[str, httpx.Client]) -> None:
    _, client = service
    detail = assert_error(client.put("/health"), 405, "method_not_allowed", "PUT", "/health")
    assert "GET" in detail


def test_invalid_json_is_a_422_saying_it_is_not_json(service: tuple[str, httpx.Client]) -> None:
    kind, client = service
    path = "/jobs" if kind == "node" else "/render"
    response = client.post(path, content=b"{not json", headers={"content-type": "application/json"})
    assert_error(response, 422, "invalid_request", "not valid JSON", "/docs")


def test_missing_field_is_a_422_naming_the_field(service: tuple[str, httpx.Client]) -> None:
    kind, client = service
    path = "/jobs" if kind == "node" else "/render"
    assert_error(client.post(path, json={"frames": "1"}), 422, "invalid_request", "scene")


def test_a_frame_number_past_blenders_last_is_a_422_not_a_500(
    service: tuple[str, httpx.Client],
) -> None:
    # Found by the fuzzer: 10**30 reached SQLite (OverflowError, 500) on the orchestrator.
    kind, client = service
    prefix = "/jobs" if kind == "node" else "/render"
    for frame in (10**30, -(10**30), 1_048_575):
        response = client.get(f"{prefix}/abc/frames/{frame}")
        assert_error(response, 422, "invalid_request", "frame")


def test_a_5000_digit_frame_number_is_a_4xx_naming_the_limit(
    service: tuple[str, httpx.Client],
) -> None:
    """Past Python's 4,300-digit int() limit, a frame spec answered 500 and a frame in a path
    a 422 that did not say which frames there are."""
    kind, client = service
    huge = "1" + "0" * 5000
    path = "/jobs" if kind == "node" else "/render"
    for spec in (huge, f"1-{huge}", f"1-10x{huge}", f"3,{huge}"):
        answer = client.post(path, json={"scene": "demo.blend", "frames": spec})
        assert_error(answer, 400, "bad_request", "7 digits", "1048574")
        assert len(answer.text) < 1000
    job = client.post(path, json={"scene": "demo.blend", "frames": "1-2"})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]
    for job_path in (f"{path}/abc/frames/{huge}", f"{path}/{job_id}/frames/{huge}"):
        assert_error(client.get(job_path), 422, "invalid_request", "7 digits", "1048574")
    # ... and the schema still gives the frame's bounds in the words OpenAPI has for them.
    operation = client.get("/openapi.json").json()["paths"][path + "/{job_id}/frames/{frame}"]
    (frame,) = [p for p in operation["get"]["parameters"] if p["name"] == "frame"]
    assert (frame["schema"]["minimum"], frame["schema"]["maximum"]) == (0, 1048574)
    if kind == "node":  # the spec of frames.tar, read once the job is found
        for spec in (huge, f"1-{huge}"):
            answer = client.get(f"/jobs/{job_id}/frames.tar", params={"frames": spec})
            assert_error(answer, 400, "bad_request", "7 digits", "1048574")


def test_job_ids_with_a_newline_are_a_400(service: tuple[str, httpx.Client]) -> None:
    kind, client = service
    prefix = "/jobs" if kind == "node" else "/render"
    assert_error(client.get(f"{prefix}/abc%0A"), 400, "bad_request", "not a job id")


def test_broken_multipart_upload_says_how_to_send_a_scene(tmp_path: Path) -> None:
    with serve_app(create_orchestrator(fast_settings(tmp_path, []))) as url:
        for content_type in ("multipart/form-data", "multipart/form-data; boundary=zz"):
            response = httpx.post(
                url + "/scenes", content=b"xx", headers={"content-type": content_type}
            )
            assert_error(response, 400, "bad_request", "curl -F file=@scene.blend")
        missing = httpx.post(url + "/scenes", files={"other": ("a.blend", b"BLENDER")})
        assert_error(missing, 422, "invalid_request", "file")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://\x00", "control characters"),
        ("http://[::1", "not a URL"),
        ("http://a b:8100", "spaces"),
        ("ftp://node:8100", "http(s)://"),
        ("http://user:pw@node:8100", "no user"),
        ("http://node:8100/?x=1", "no user, query"),
        ("http://:8100", "http(s)://host"),
    ],
)
def test_node_registration_refuses_urls_it_could_not_call(
    tmp_path: Path, url: str, why: str
) -> None:
    # Found by the fuzzer: such URLs were registered and got batches dispatched to them.
    with serve_app(create_orchestrator(fast_settings(tmp_path, []))) as base:
        response = httpx.post(base + "/nodes/register", json={"url": url, "slots": 1})
        assert_error(response, 400, "bad_request", why)
        assert httpx.get(base + "/nodes").json() == []


def test_node_registration_bounds_its_numbers(tmp_path: Path) -> None:
    with serve_app(create_orchestrator(fast_settings(tmp_path, []))) as base:
        body = {"url": "http://node:8100", "cpu_count": 10**30}
        response = httpx.post(base + "/nodes/register", json=body)
        assert_error(response, 422, "invalid_request", "cpu_count")


def test_errors_of_text_and_file_endpoints_are_documented_as_json(tmp_path: Path) -> None:
    # Found by the fuzzer: FastAPI documented the 404 of /jobs/{id}/log as text/plain.
    node = create_node(NodeSettings(data_dir=tmp_path / "n")).openapi()
    orch = create_orchestrator(fast_settings(tmp_path, [])).openapi()
    for schema, path, method in [
        (node, "/jobs/{job_id}/log", "get"),
        (node, "/jobs/{job_id}/frames/{frame}", "get"),
        (orch, "/metrics", "get"),
        (orch, "/render/{job_id}/frames/{frame}", "get"),
    ]:
        responses = schema["paths"][path][method]["responses"]
        assert list(responses["404"]["content"]) == ["application/json"], path
        assert "application/json" not in responses["200"]["content"], path
    head = node["paths"]["/scenes/{sha256}"]["head"]["responses"]
    assert all("content" not in answer for answer in head.values())  # HEAD has no body


def test_a_bug_is_a_500_in_the_error_shape_without_internals() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internal state")

    response = TestClient(app, raise_server_exceptions=False).get("/boom")
    assert response.status_code == 500
    assert response.json()["error"] == "internal_error"
    assert "secret" not in response.json()["detail"]


def test_a_field_the_service_does_not_know_is_a_422_naming_it(
    service: tuple[str, httpx.Client],
) -> None:
    kind, client = service
    path = "/jobs" if kind == "node" else "/render"
    response = client.post(path, json={"scene": "demo.blend", "frames": "7", "samples": 4})
    assert_error(response, 422, "invalid_request", "samples")
