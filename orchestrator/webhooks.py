"""Webhooks: jobs that end and nodes that are lost, told to URLs the operator gives
(--webhook), as JSON POSTs signed with HMAC-SHA256 under --webhook-secret.

`emit` only queues: the scheduler never waits for a receiver. A sender task posts each event to
every URL in turn, retrying with backoff (a receiver down for a minute loses nothing); the queue
is bounded, and when it is full the oldest event goes, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Farm-Signature"
QUEUE_LIMIT = 1000  # events waiting to be sent
ATTEMPTS = 6  # per event and URL: after 1 + 2 + 4 + 8 + 16 s of backoff, given up
TIMEOUT_SECONDS = 10.0


def signature(secret: str, body: bytes) -> str:
    """The header value for `body`: sha256=<hex of HMAC-SHA256(secret, body)>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def event_body(event: str, subject: str, value: dict[str, Any], at: float) -> bytes:
    return json.dumps({"event": event, "at": at, subject: value}, separators=(",", ":")).encode()


class Webhooks:
    def __init__(
        self,
        urls: Sequence[str],
        secret: str | None,
        *,
        client: httpx.AsyncClient | None = None,
        verify: ssl.SSLContext | bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.urls = list(urls)
        self.secret = secret
        self._client = client
        self._verify = verify
        self._sleep = sleep
        self._clock = clock
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_LIMIT)
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.given_up = 0

    def emit(self, event: str, subject: str, value: dict[str, Any]) -> None:
        """Queue `event` ("job.completed") about `subject` ("job", "node"); never blocks."""
        if not self.urls:
            return
        body = event_body(event, subject, value, self._clock())
        if self._queue.full():
            self._queue.get_nowait()
            log.warning("webhook queue full (%d events): the oldest is dropped", QUEUE_LIMIT)
        self._queue.put_nowait(body)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._send_all(), name="webhooks")

    async def _send_all(self) -> None:
        own = self._client is None
        client = self._client or httpx.AsyncClient(timeout=TIMEOUT_SECONDS, verify=self._verify)
        try:
            while not self._queue.empty():
                body = self._queue.get_nowait()
                for url in self.urls:
                    await self._send(client, url, body)
        finally:
            if own:
                await client.aclose()

    async def _send(self, client: httpx.AsyncClient, url: str, body: bytes) -> None:
        headers = {"Content-Type": "application/json"}
        if self.secret:
            headers[SIGNATURE_HEADER] = signature(self.secret, body)
        problem = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await self._sleep(2.0 ** (attempt - 1))
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code < 300:
                self.sent += 1
                return
            problem = f"HTTP {response.status_code}"
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                break  # the receiver refuses it: sending it again changes nothing
        self.given_up += 1
        log.warning("webhook %s: gave up on an event (%s)", url, problem)

    async def aclose(self) -> None:
        """Stop sending (at shutdown): what is queued is dropped."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
