"""The node client against a tiny aiohttp server on loopback: answers are read into the protocol's
models, and whatever a node sends (or fails to send) becomes a NodeError with a clear message."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from farm_common.protocol import FrameState, JobState
from orchestrator.nodes.archive import FrameFiles
from orchestrator.nodes.client import (
    FrameMissing,
    MalformedAnswer,
    NodeClient,
    NodeError,
    NodeJobGone,
    NodeRejected,
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

DETAIL = {
    "id": "j1",
    "state": "running",
    "scene": "demo.blend",
    "format": "PNG",
    "counts": {"total": 2, "pending": 0, "rendering": 1, "done": 1, "failed": 0},
    "progress": 0.5,
    "created": 1.0,
    "frames": [{"frame": 1, "state": "done", "seconds": 0.5}, {"frame": 2, "state": "rendering"}],
    "version": "running/1/0",
}
INFO = {
    "version": "1.0",
    "blender_version": "4.2.0",
    "slots": 2,
    "busy": 0,
    "cpu_count": 4,
    "threads": 4,
    "name": "n0",
    "url": "http://n0",
    "jobs": {"queued": 0, "running": 0, "finished": 0},
}


def answering(status: int, body: Any) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        if isinstance(body, bytes):
            return web.Response(status=status, body=body)
        return web.json_response(body, status=status)

    return handle


def run(
    routes: dict[tuple[str, str], Handler],
    scenario: Callable[[NodeClient, str], Awaitable[None]],
    timeout: float = 2.0,
) -> list[str]:
    """Serve `routes` on a free loopback port, run `scenario(client, node url)`; return the
    node URLs the client heard answer."""
    heard: list[str] = []

    async def main() -> None:
        app = web.Application()
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        client = NodeClient(None, timeout, timeout, on_answer=heard.append)
        try:
            await scenario(client, str(server.make_url("")).rstrip("/"))
        finally:
            await client.aclose()
            await server.close()

    asyncio.run(main())
    return heard


def test_answers_are_read_into_the_protocols_models() -> None:
    created = {"id": "j1", "state": "queued", "status_url": "/jobs/j1", "version": "queued/0/0"}
    routes = {
        ("POST", "/jobs"): answering(202, created),
        ("GET", "/jobs/j1"): answering(200, DETAIL),
        ("GET", "/info"): answering(200, INFO),
    }

    async def scenario(client: NodeClient, url: str) -> None:
        job = await client.submit(url, "demo.blend", "1-2", "PNG")
        assert (job.id, job.state, job.version) == ("j1", JobState.QUEUED, "queued/0/0")
        status = await client.status(url, "j1")
        assert status.state is JobState.RUNNING
        assert [(f.frame, f.state, f.seconds) for f in status.frames] == [
            (1, FrameState.DONE, 0.5),
            (2, FrameState.RENDERING, None),
        ]
        info = await client.info(url)
        assert (info.slots, info.blender_version) == (2, "4.2.0")

    assert run(routes, scenario) != []


@pytest.mark.parametrize(
    ("call", "path", "body", "says"),
    [
        ("status", "/jobs/j1", {"id": "j1", "state": "running"}, "malformed JobDetail"),
        ("status", "/jobs/j1", {**DETAIL, "state": "exploded"}, "state"),
        ("status", "/jobs/j1", {**DETAIL, "frames": [{"frame": "one"}]}, "frames.0.frame"),
        # NaN is valid to Python's JSON reader; one NaN of render seconds poisoned the speeds.
        ("status", "/jobs/j1", {**DETAIL, "progress": float("nan")}, "progress"),
        ("status", "/jobs/j1", b"<html>proxy error</html>", "Invalid JSON"),
        ("status", "/jobs/j1", [1, 2], "malformed JobDetail"),
        ("submit", "/jobs", {"id": "j1"}, "malformed JobCreated"),
        ("info", "/info", {**INFO, "slots": "many"}, "slots"),
    ],
)
def test_a_malformed_answer_is_a_rejection_that_says_what_is_wrong(
    call: str, path: str, body: Any, says: str
) -> None:
    method = "POST" if call == "submit" else "GET"

    async def scenario(client: NodeClient, url: str) -> None:
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "status": lambda: client.status(url, "j1"),
            "submit": lambda: client.submit(url, "demo.blend", "1", "PNG"),
            "info": lambda: client.info(url),
        }
        with pytest.raises(MalformedAnswer) as caught:
            await calls[call]()
        assert says in str(caught.value) and path in str(caught.value)

    heard = run({(method, path): answering(200 if call != "submit" else 202, body)}, scenario)
    assert heard  # it answered, however badly: alive, and the batch pays, not the node


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, NodeRejected), (401, NodeRejected), (404, NodeJobGone), (500, NodeError)],
)
def test_status_codes_map_to_what_they_mean(status: int, kind: type[NodeError]) -> None:
    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(NodeError) as caught:
            await client.status(url, "j1")
        assert type(caught.value) is kind
        if status == 500:
            assert "disk on fire" in str(caught.value)

    heard = run({("GET", "/jobs/j1"): answering(status, {"detail": "disk on fire"})}, scenario)
    assert bool(heard) is (status < 500)  # a 5xx is no sign of life


def test_a_node_that_does_not_answer_in_time_is_a_node_error() -> None:
    never = asyncio.Event()

    async def hang(request: web.Request) -> web.StreamResponse:
        await never.wait()
        return web.Response()

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(NodeError) as caught:
            await client.status(url, "j1")
        assert type(caught.value) is NodeError
        assert f"GET {url}/jobs/j1: " in str(caught.value) and "Timeout" in str(caught.value)

    assert run({("GET", "/jobs/j1"): hang}, scenario, timeout=0.2) == []


def test_a_node_that_is_not_there_is_a_node_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nobody listens there

    async def main() -> None:
        client = NodeClient(None, 2.0, 2.0)
        url = f"http://127.0.0.1:{port}"
        try:
            for call in (
                client.info(url),
                client.has_scene(url, "ab"),
                client.submit(url, "demo.blend", "1", "PNG"),
                client.delete(url, "j1"),
            ):
                with pytest.raises(NodeError) as caught:
                    await call
                assert type(caught.value) is NodeError and "ClientConnectorError" in str(
                    caught.value
                )
        finally:
            await client.aclose()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("status", "kind"),
    [(404, NodeJobGone), (409, FrameMissing), (400, NodeRejected), (503, NodeError)],
)
def test_archive_refusals_map_to_what_they_mean(
    tmp_path: Path, status: int, kind: type[NodeError]
) -> None:
    files = FrameFiles({1: tmp_path / "frame_00001.png"}, lambda p: p.with_suffix(".part"))

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(NodeError) as caught:
            await client.download_archive(url, "j1", [1], files)
        assert type(caught.value) is kind

    run({("GET", "/jobs/j1/frames.tar"): answering(status, {"detail": "no"})}, scenario)
    assert files.placed == []


def test_a_broken_archive_keeps_nothing_and_says_frames_are_missing(tmp_path: Path) -> None:
    files = FrameFiles({1: tmp_path / "frame_00001.png"}, lambda p: p.with_suffix(".part"))

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(FrameMissing, match="broken archive"):
            await client.download_archive(url, "j1", [1], files)

    run({("GET", "/jobs/j1/frames.tar"): answering(200, b"x" * 700)}, scenario)
    assert files.placed == [] and not list(tmp_path.iterdir())
