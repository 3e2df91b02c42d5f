"""Schemathesis against both services' OpenAPI schemas, on real servers on loopback (the node
with the fake Blender, the orchestrator with a fake node): every operation, with the token and
without it (or with a wrong one). Fails on any 5xx, and on any answer whose status code,
content type or body the schema does not describe (errors included: they are documented).

What it found is pinned by named tests in test_api_errors.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from orchestrator.api.app import create_app as create_orchestrator
from orchestrator.settings import OrchestratorSettings
from render_node.api import create_app as create_node
from render_node.settings import NodeSettings
from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.integration.conftest import FAKE_BLENDER, SCENES
from tests.orch_helpers import fast_settings
from tests.servers import serve_app

TOKEN = "fuzz-token"
JOIN = "fuzz-join-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NO_TOKEN = {"Authorization": ""}
WRONG_TOKEN = {"Authorization": "Bearer not-the-token"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# A few hundred requests per service in all; FUZZ_EXAMPLES raises it for a longer hunt.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz-node")
    node = NodeSettings(
        data_dir=data, scenes_dir=SCENES, blender=str(FAKE_BLENDER), token=TOKEN, max_upload_mb=1
    )
    environ = {**os.environ, "FAKE_BLENDER_SECONDS": "0.01"}
    with serve_app(create_node(node, environ=environ)) as url:
        yield url


@pytest.fixture(scope="module")
def orchestrator_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("fuzz-orchestrator")
    fake = FakeNode("fuzz", slots=2, seconds_per_frame=0.001, token=TOKEN)
    with serve_in_thread(fake_farm_app([fake])) as farm:
        settings_ = fast_settings(
            root, [f"{farm}/n/0"], token=TOKEN, join_token=JOIN, max_upload_mb=1
        )
        with serve_app(create_orchestrator(settings_)) as url:
            yield url


@pytest.fixture(scope="module")
def role_headers(orchestrator_url: str) -> dict[str, dict[str, str]]:
    """A token of each other role: the fuzzing holds with each (a refusal is a documented 403)."""
    headers = {"node": {"Authorization": f"Bearer {JOIN}"}}
    for role in ("submit", "view"):
        made = httpx.post(
            orchestrator_url + "/tokens", json={"name": f"fuzz-{role}", "role": role},
            headers=AUTH, timeout=10,
        )  # fmt: skip
        assert made.status_code == 201, made.text
        headers[role] = {"Authorization": f"Bearer {made.json()['token']}"}
    return headers


def _schema(url: str) -> BaseSchema:
    """The schema the live server serves (not the in-process app's), aimed at that server."""
    return schemathesis.openapi.from_url(url + "/openapi.json", headers=AUTH)


@pytest.fixture(scope="module")
def node_schema(node_url: str) -> BaseSchema:
    return _schema(node_url)


@pytest.fixture(scope="module")
def orchestrator_schema(orchestrator_url: str) -> BaseSchema:
    return _schema(orchestrator_url)


def _labels(schema: dict[str, Any]) -> list[str]:
    return [
        f"{method.upper()} {path}"
        for path, item in schema["paths"].items()
        for method in item
        if method in ("get", "put", "post", "delete", "patch", "head")
    ]


# Operation names for test ids, from in-process apps (building one does no I/O).
NODE_OPERATIONS = _labels(create_node(NodeSettings(data_dir=Path("unused"))).openapi())
ORCHESTRATOR_OPERATIONS = _labels(create_orchestrator(OrchestratorSettings()).openapi())


def fuzz(schema: BaseSchema, label: str, examples: int, *header_sets: dict[str, str]) -> None:
    """Positive and negative cases of one operation, each sent with every header set."""
    operation = schema.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served schema"
    cases = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )

    @given(case=cases)
    @settings(
        max_examples=examples,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        for headers in header_sets:
            response = case.call_and_validate(headers=headers, checks=CHECKS)
            print(
                "PROBE",
                case.method,
                case.path,
                response.status_code,
                repr(case.body)[:60] if headers is AUTH else "",
            )
            if headers in (NO_TOKEN, WRONG_TOKEN) and case.path != "/health":
                expected = 403 if headers.get("Authorization") else 401
                assert response.status_code == expected, (label, headers, response.text)

    run()


@pytest.mark.parametrize("label", NODE_OPERATIONS)
def test_fuzz_node(node_schema: BaseSchema, label: str) -> None:
    fuzz(node_schema, label, EXAMPLES, AUTH)
    fuzz(node_schema, label, max(3, EXAMPLES // 5), NO_TOKEN, WRONG_TOKEN)


@pytest.mark.parametrize("label", ORCHESTRATOR_OPERATIONS)
def test_fuzz_orchestrator(
    orchestrator_schema: BaseSchema, role_headers: dict[str, dict[str, str]], label: str
) -> None:
    fuzz(orchestrator_schema, label, EXAMPLES, AUTH)
    fuzz(orchestrator_schema, label, max(3, EXAMPLES // 5), NO_TOKEN, WRONG_TOKEN)
    fuzz(orchestrator_schema, label, max(3, EXAMPLES // 5), *role_headers.values())


def test_both_schemas_document_the_error_shape(
    node_schema: BaseSchema,
    orchestrator_schema: BaseSchema,
) -> None:
    for schema in (node_schema, orchestrator_schema):
        raw = schema.raw_schema
        assert set(raw["components"]["schemas"]["ErrorBody"]["required"]) == {"error", "detail"}
        for path, item in raw["paths"].items():
            for method, operation in item.items():
                for code in ("401", "403", "404", "422"):
                    assert code in operation["responses"], (method, path, code)
