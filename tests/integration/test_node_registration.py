"""Registration: the node heartbeats its own URL and capacity to an orchestrator."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request

from tests.integration.conftest import StartNode
from tests.servers import free_port, serve_app


def fake_orchestrator(received: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/nodes/register")
    async def register(request: Request) -> dict[str, str]:
        received.append(
            {"body": await request.json(), "auth": request.headers.get("authorization")}
        )
        return {"status": "registered"}

    return app


def test_node_registers_its_own_url_and_capacity_every_heartbeat(start_node: StartNode) -> None:
    received: list[dict[str, Any]] = []
    with serve_app(fake_orchestrator(received)) as orchestrator:
        start_node(orchestrator=orchestrator, token="tok", heartbeat_seconds=0.1, slots=2, port=9)
        deadline = time.monotonic() + 5
        while len(received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert len(received) >= 2
    body = received[0]["body"]
    fields = "url slots busy version blender_version cpu_count name instance sandbox engine"
    fields += " devices device warm tags active_hours off_hours work_key"
    assert set(body) == set(fields.split())
    # The key the orchestrator is to show this node: random, the same in every heartbeat.
    assert len(body["work_key"]) >= 32 and received[1]["body"]["work_key"] == body["work_key"]
    assert (body["engine"], body["devices"], body["device"]) == ("blender", ["CPU", "CPU"], "cpu")
    assert (body["tags"], body["active_hours"], body["off_hours"]) == ([], None, False)
    assert body["sandbox"] == "none"  # what start_node asks for: said, so /nodes can show it
    # Routed towards a loopback orchestrator, the node's own address is loopback too.
    assert body["url"] == "http://127.0.0.1:9"
    assert body["slots"] == 2 and body["busy"] == 0
    assert body["blender_version"] == "3.4.1"
    assert received[0]["auth"] == "Bearer tok"


def test_advertise_url_overrides_the_detected_address(start_node: StartNode) -> None:
    received: list[dict[str, Any]] = []
    with serve_app(fake_orchestrator(received)) as orchestrator:
        start_node(
            orchestrator=orchestrator,
            advertise_url="http://render-7.lan:8100",
            heartbeat_seconds=0.1,
        )
        deadline = time.monotonic() + 5
        while not received and time.monotonic() < deadline:
            time.sleep(0.05)
    assert received[0]["body"]["url"] == "http://render-7.lan:8100"


def test_unreachable_orchestrator_does_not_stop_the_node(start_node: StartNode) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    node = start_node(orchestrator=dead, heartbeat_seconds=0.05)
    time.sleep(0.3)
    assert node.wait(node.submit("1"))["state"] == "completed"


def test_detected_address_is_worked_out_again_on_every_heartbeat(
    start_node: StartNode, monkeypatch: Any
) -> None:
    # As in a Swarm: the orchestrator's name does not resolve at first, then it does.
    answers = iter(["http://5cb22156f986:8100"] * 2)
    monkeypatch.setattr(
        "render_node.api.app.default_advertise_url",
        lambda host, port, orchestrator, scheme: next(answers, "http://10.0.3.7:8100"),
    )
    received: list[dict[str, Any]] = []
    with serve_app(fake_orchestrator(received)) as orchestrator:
        start_node(orchestrator=orchestrator, heartbeat_seconds=0.05)
        deadline = time.monotonic() + 5
        while len(received) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    urls = [r["body"]["url"] for r in received]
    assert urls[0] == "http://5cb22156f986:8100"
    assert urls[-1] == "http://10.0.3.7:8100"
