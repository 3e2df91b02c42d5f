"""Webhooks: signed bodies, retries with backoff, and what is given up (no network: httpx's
mock transport stands in for the receiver)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx
import pytest

from orchestrator import webhooks
from orchestrator.webhooks import SIGNATURE_HEADER, Webhooks


def receiver(answers: list[int]) -> tuple[httpx.AsyncClient, list[httpx.Request]]:
    """A client whose receiver answers `answers` in turn (then 200), and what it received."""
    got: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        got.append(request)
        return httpx.Response(answers.pop(0) if answers else 200)

    return httpx.AsyncClient(transport=httpx.MockTransport(handle)), got


async def run(hooks: Webhooks) -> None:
    assert hooks._task is not None
    await hooks._task


def test_an_event_is_signed_and_retried_with_backoff_until_taken() -> None:
    async def go() -> None:
        client, got = receiver([500, 503])
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        hooks = Webhooks(["http://hook/a"], "s3cret", client=client, sleep=sleep,
                         clock=lambda: 1700.0)  # fmt: skip
        hooks.emit("job.completed", "job", {"id": "abc", "state": "completed"})
        await run(hooks)
        assert len(got) == 3 and slept == [1.0, 2.0] and hooks.sent == 1
        body = got[-1].content
        assert json.loads(body) == {
            "event": "job.completed", "at": 1700.0, "job": {"id": "abc", "state": "completed"}
        }  # fmt: skip
        expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
        assert got[-1].headers[SIGNATURE_HEADER] == f"sha256={expected}"
        assert got[-1].headers["content-type"] == "application/json"

    asyncio.run(go())


def test_a_refusing_receiver_is_not_asked_again_and_a_down_one_is_given_up() -> None:
    async def go() -> None:
        client, got = receiver([400, *[500] * webhooks.ATTEMPTS])

        async def sleep(seconds: float) -> None:
            return None

        hooks = Webhooks(["http://hook/a"], None, client=client, sleep=sleep)
        hooks.emit("node.lost", "node", {"url": "http://n1"})
        hooks.emit("node.lost", "node", {"url": "http://n2"})
        await run(hooks)
        assert len(got) == 1 + webhooks.ATTEMPTS  # a 400 once; a 500 every attempt
        assert hooks.given_up == 2 and hooks.sent == 0
        assert SIGNATURE_HEADER not in got[0].headers  # no secret: unsigned

    asyncio.run(go())


def test_a_full_queue_drops_its_oldest_event(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        monkeypatch.setattr(webhooks, "QUEUE_LIMIT", 2)
        client, got = receiver([])
        hooks = Webhooks(["http://hook/a"], None, client=client)
        hooks._queue = asyncio.Queue(2)
        for n in range(3):
            hooks.emit("job.failed", "job", {"n": n})  # the sender has not run yet
        await run(hooks)
        assert [json.loads(r.content)["job"]["n"] for r in got] == [1, 2]
        Webhooks([], None).emit("job.failed", "job", {})  # no URL: nothing to do

    asyncio.run(go())
