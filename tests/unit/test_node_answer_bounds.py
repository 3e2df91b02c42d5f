"""A node's answers are bounded in size and in time as a whole, not only per read: the node
client against a tiny aiohttp server on loopback that drips or floods its answers.

The timeouts here are a fraction of a second and each drip would go on for many seconds: a
deadline that did not hold would show as the outer `wait_for` failing the test, never as a hang.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from farm_common.protocol import MAX_MESSAGE_CHARS, NodeInfo
from orchestrator.nodes.archive import FrameFiles
from orchestrator.nodes.client import (
    MAX_ANSWER_BYTES,
    Answer,
    AnswerTooLarge,
    NodeClient,
    TooSlow,
)
from render_node.archive import tar_header
from tests.unit.test_node_client import INFO

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
READ_TIMEOUT = 0.3  # each drip below sends a byte well within it
DRIP = 0.05
DETAIL = {
    "id": "j1",
    "state": "running",
    "scene": "demo.blend",
    "format": "PNG",
    "counts": {"total": 1, "pending": 0, "rendering": 1, "done": 0, "failed": 0},
    "progress": 0.0,
    "created": 1.0,
    "frames": [{"frame": 1, "state": "rendering"}],
    "version": "running/1/0",
}


def dripping(body: bytes, status: int = 200, *, head: int = 0) -> Handler:
    """Answers `status`, sends `head` bytes of `body` at once, then a byte every DRIP seconds."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(status=status)
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[:head])
        for i in range(head, len(body)):
            await asyncio.sleep(DRIP)
            await resp.write(body[i : i + 1])
        return resp

    return handle


def run(
    routes: dict[tuple[str, str], Handler],
    scenario: Callable[[NodeClient, str], Awaitable[None]],
    *,
    min_rate: float,
) -> None:
    async def main() -> None:
        app = web.Application()
        for (method, path), handler in routes.items():
            app.router.add_route(method, path, handler)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        client = NodeClient(None, READ_TIMEOUT, READ_TIMEOUT, min_rate=min_rate)
        try:
            url = str(server.make_url("")).rstrip("/")
            await asyncio.wait_for(scenario(client, url), timeout=10)
        finally:
            await client.aclose()
            await server.close()

    asyncio.run(main())


def test_a_status_answer_dripped_a_byte_at_a_time_ends_at_its_deadline() -> None:
    body = json.dumps(DETAIL).encode()  # ~300 bytes: 15 s of drip

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(TooSlow, match="no whole answer within") as caught:
            await client.status(url, "j1", frames=1)
        assert "--min-transfer-kb-per-second" in str(caught.value)

    # Deadline: the read timeout plus ~1 MB at 100 MB/s, well under a second.
    run({("GET", "/jobs/j1"): dripping(body)}, scenario, min_rate=100 << 20)


def test_an_info_answer_dripped_ends_at_its_deadline_too() -> None:
    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(TooSlow):
            await client.info(url)

    run({("GET", "/info"): dripping(b"{" + b" " * 1000 + b"}")}, scenario, min_rate=100 << 20)


def test_frames_tar_dripped_after_a_good_start_is_given_up(tmp_path: Path) -> None:
    image = b"\x89PNG\r\n\x1a\n" + bytes(1000)
    archive = tar_header("frame_00001.png", len(image), 0) + image
    files = FrameFiles({1: tmp_path / "frame_00001.png"}, lambda p: p.with_suffix(".part"))

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(TooSlow, match="under the farm's lowest rate"):
            await client.download_archive(url, "j1", [1], files)

    # 600 bytes at once, then a byte every 50 ms: far under 64 KB/s once 0.3 s passed.
    handler = dripping(archive, head=600)
    run({("GET", "/jobs/j1/frames.tar"): handler}, scenario, min_rate=64 << 10)
    files.discard()  # as the batch runner does: the half-written frame goes
    assert files.placed == [] and not list(tmp_path.iterdir())


def test_a_refusal_of_frames_tar_dripped_is_given_up_too(tmp_path: Path) -> None:
    files = FrameFiles({1: tmp_path / "frame_00001.png"}, lambda p: p.with_suffix(".part"))
    body = json.dumps({"detail": "x" * 500}).encode()

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(TooSlow):
            await client.download_archive(url, "j1", [1], files)

    run({("GET", "/jobs/j1/frames.tar"): dripping(body, 409)}, scenario, min_rate=64 << 10)


@pytest.mark.parametrize("declared", [True, False])
def test_an_answer_past_its_cap_is_refused_naming_the_cap(declared: bool) -> None:
    size = MAX_ANSWER_BYTES + (3 << 20)

    async def huge(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if declared:
            resp.content_length = size
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(b"{" + b" " * (size - 2) + b"}")
        return resp

    async def scenario(client: NodeClient, url: str) -> None:
        with pytest.raises(
            AnswerTooLarge, match=f"over {MAX_ANSWER_BYTES}|than {MAX_ANSWER_BYTES}"
        ):
            await client.info(url)

    run({("GET", "/info"): huge}, scenario, min_rate=100 << 20)


def test_what_a_node_says_of_a_refusal_is_cut_to_a_message() -> None:
    said = json.dumps({"detail": "no " * 100_000}).encode()
    answer = Answer("POST", "http://n/jobs", 400, said)
    assert len(answer.detail()) == MAX_MESSAGE_CHARS
    assert len(str(answer.refused())) < MAX_MESSAGE_CHARS + 100


@pytest.mark.parametrize(
    ("field", "value"),
    [("busy", 300_000), ("cpu_count", 10**12), ("threads", 10**12), ("slots", 300_000)],
)
def test_node_info_refuses_impossible_counts(field: str, value: int) -> None:
    NodeInfo.model_validate(INFO)
    with pytest.raises(ValidationError, match=field):
        NodeInfo.model_validate({**INFO, field: value})
