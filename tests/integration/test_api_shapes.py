"""The orchestrator's answers match the models its OpenAPI schema names, the formats it takes
are the nodes' formats, and a request with a field it does not know is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from farm_common.protocol import FORMATS
from orchestrator.api.app import create_app
from orchestrator.api.models import FrameList, FrameMap, NodeView, RenderDetail, RenderSummary
from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.orch_helpers import fast_settings, orchestrator_in_thread, wait_job, wait_until


@pytest.fixture
def idle_farm(tmp_path: Path) -> Iterator[httpx.Client]:
    """An orchestrator without nodes: jobs wait in the queue."""
    with (
        orchestrator_in_thread(fast_settings(tmp_path, [])) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        yield client


def test_a_finished_job_answers_in_the_shapes_the_schema_names(tmp_path: Path) -> None:
    nodes = [FakeNode("n0", slots=2, seconds_per_frame=0.01, fail_frames={4})]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, [f"{farm}/n/0"])) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: [n["state"] for n in client.get("/nodes").json()] == ["healthy"])
        job_id = client.post("/render", json={"scene": "demo.blend", "frames": "1-6"}).json()["id"]
        status = wait_job(client, job_id)
        detail = RenderDetail.model_validate(status)  # the spliced body, field by field
        assert detail.frames.done == 5 and detail.failed_frames[0].frame == 4
        assert detail.batches and all(b.node == f"{farm}/n/0" for b in detail.batches)
        for summary in client.get("/render").json():
            RenderSummary.model_validate(summary)
        FrameList.model_validate(client.get(f"/render/{job_id}/frames").json())
        FrameMap.model_validate(client.get(f"/render/{job_id}/framemap").json())
        for node in client.get("/nodes").json():
            NodeView.model_validate(node)
        schema = client.get("/openapi.json").json()
        answer = schema["paths"]["/render/{job_id}"]["get"]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"]["$ref"].endswith("/RenderDetail")


@pytest.mark.parametrize(
    ("given", "stored"), [("JPG", "JPEG"), ("hdr", "HDR"), ("EXR", "OPEN_EXR")]
)
def test_every_format_a_node_renders_is_taken_by_its_name_or_alias(
    idle_farm: httpx.Client, given: str, stored: str
) -> None:
    resp = idle_farm.post("/render", json={"scene": "demo.blend", "frames": "1", "format": given})
    assert resp.status_code == 202, resp.text
    assert idle_farm.get(f"/render/{resp.json()['id']}").json()["format"] == stored


def test_an_unknown_format_is_a_400_listing_the_known_ones(idle_farm: httpx.Client) -> None:
    resp = idle_farm.post("/render", json={"scene": "demo.blend", "frames": "1", "format": "GIF"})
    assert resp.status_code == 400
    assert all(name in resp.json()["detail"] for name in FORMATS)


@pytest.mark.parametrize(
    ("path", "body", "unknown"),
    [
        ("/render", {"scene": "demo.blend", "frames": "7", "tile_count": 4}, "tile_count"),
        ("/render", {"scene": "demo.blend", "frames": "7", "batchsize": 2}, "batchsize"),
        ("/nodes/register", {"url": "http://127.0.0.1:9", "slot": 2}, "slot"),
    ],
)
def test_a_field_the_orchestrator_does_not_know_is_a_422_naming_it(
    idle_farm: httpx.Client, path: str, body: dict[str, object], unknown: str
) -> None:
    resp = idle_farm.post(path, json=body)
    assert resp.status_code == 422, resp.text
    assert unknown in resp.json()["detail"]


def test_nodes_are_told_to_heartbeat_well_within_the_loss_timeout(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path, [], node_timeout_seconds=9.0)
    with (
        serve_in_thread(create_app(settings)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        answer = client.post("/nodes/register", json={"url": "http://127.0.0.1:9"}).json()
    assert answer == {"ok": True, "heartbeat_seconds": 3.0}
