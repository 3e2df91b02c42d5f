"""The fake node speaks the real node's contract: every route it serves is the node's, with the
same request and answer models in the OpenAPI schema, and its answers validate against them."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from farm_common import protocol
from render_node.api import create_app as create_node
from render_node.settings import NodeSettings
from tests.fake_node import FakeNode, create_fake_node_app
from tests.integration.conftest import FAKE_BLENDER, SCENES

SUCCESS = ("200", "201", "202")


def node_schema(tmp_path: Path) -> dict[str, Any]:
    settings = NodeSettings(
        data_dir=tmp_path / "node", scenes_dir=SCENES, blender=str(FAKE_BLENDER)
    )
    return create_node(settings).openapi()


def models_of(operation: dict[str, Any]) -> dict[str, str | None]:
    """The model names an operation takes and gives: {"request": ..., "200": ...}."""
    named: dict[str, str | None] = {}
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    named["request"] = body.get("schema", {}).get("$ref")
    for code in SUCCESS:
        answer = operation.get("responses", {}).get(code)
        if answer is not None:
            schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
            named[code] = schema.get("$ref")
    return named


def test_every_route_of_the_fake_is_the_nodes_with_the_same_models(tmp_path: Path) -> None:
    real = node_schema(tmp_path)
    fake = create_fake_node_app(FakeNode("n0")).openapi()
    checked = 0
    for path, item in fake["paths"].items():
        assert path in real["paths"], f"the node has no {path}"
        for method, operation in item.items():
            assert method in real["paths"][path], f"the node has no {method.upper()} {path}"
            theirs = models_of(real["paths"][path][method])
            ours = models_of(operation)
            assert ours == theirs, f"{method.upper()} {path}: fake {ours}, node {theirs}"
            for ref in filter(None, ours.values()):
                name = ref.rsplit("/", 1)[1]
                assert fake["components"]["schemas"][name] == real["components"]["schemas"][name]
                checked += 1
    assert checked >= 6  # submit, status, delete, info, scene upload, health at least


def validate(schema: dict[str, Any], path: str, method: str, code: str, body: Any) -> BaseModel:
    """`body` read into the protocol model the node's schema names for that answer."""
    ref = schema["paths"][path][method]["responses"][code]["content"]["application/json"]
    model: type[BaseModel] = getattr(protocol, ref["schema"]["$ref"].rsplit("/", 1)[1])
    return model.model_validate(body, strict=False)


@pytest.mark.parametrize("fail", [False, True])
def test_the_fakes_answers_are_the_models_the_node_names(tmp_path: Path, fail: bool) -> None:
    schema = node_schema(tmp_path)
    node = FakeNode(
        "n0",
        seconds_per_frame=0.0,
        fail_frames={2} if fail else set(),
        named_scenes={"demo.blend"},
    )
    with TestClient(create_fake_node_app(node)) as client:
        submitted = client.post("/jobs", json={"scene": "demo.blend", "frames": "1-3"})
        created = validate(schema, "/jobs", "post", "202", submitted.json())
        assert isinstance(created, protocol.JobCreated)
        deadline = time.monotonic() + 10
        while True:
            answer = client.get(f"/jobs/{created.id}", params={"wait": 1, "since": "x"})
            detail = validate(schema, "/jobs/{job_id}", "get", "200", answer.json())
            assert isinstance(detail, protocol.JobDetail)
            if detail.state in protocol.FINAL_JOB_STATES or time.monotonic() > deadline:
                break
        assert [f.frame for f in detail.frames] == [1, 2, 3]
        assert detail.state == (protocol.JobState.FAILED if fail else protocol.JobState.COMPLETED)
        validate(schema, "/info", "get", "200", client.get("/info").json())
        gone = client.delete(f"/jobs/{created.id}")
        validate(schema, "/jobs/{job_id}", "delete", "200", gone.json())
        unknown = client.post("/jobs", json={"scene": "demo.blend", "frames": "1", "tiles": 4})
        assert unknown.status_code == 422  # the request model refuses unknown fields here too
