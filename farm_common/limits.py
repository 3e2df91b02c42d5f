"""Request limits shared by both services: body size counted while it streams in (whatever
Content-Length says, chunked bodies included), and a per-client token bucket.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm_common.errors import error_body

MIB = 1 << 20
JSON_LIMIT = MIB  # every body but a scene upload


def size_text(limit: int) -> str:
    return f"{limit / MIB:g} MB" if limit >= MIB else f"{limit // 1024} KB"


class BodyTooLarge(HTTPException):
    """Raised from `receive`; an HTTPException so FastAPI's body parsing lets it through."""

    def __init__(self, detail: str) -> None:
        super().__init__(413, detail)


# (method, path) -> (largest body in bytes, what is wrong and how to fix it), or None.
LimitFor = Callable[[str, str], tuple[int, str] | None]


# A job naming a packed shot carries its manifest: 20,000 files of long paths.
MANIFEST_JSON_LIMIT = 8 << 20
MANIFEST_PATHS = frozenset({"/render", "/jobs"})


def json_limit(method: str, path: str) -> tuple[int, str] | None:
    if method == "POST" and path in MANIFEST_PATHS:
        return MANIFEST_JSON_LIMIT, (
            f"request body is larger than {size_text(MANIFEST_JSON_LIMIT)}: a manifest of at "
            "most 20,000 files fits"
        )
    return JSON_LIMIT, (
        f"request body is larger than {size_text(JSON_LIMIT)}: send a smaller JSON body "
        "(a frame spec like '1-1000' is enough)"
    )


class BodyLimitMiddleware:
    """Refuses a body over its route's limit: at once when Content-Length says so, else as soon
    as the bytes received pass it (the handler then never sees a complete body)."""

    def __init__(self, app: ASGIApp, limit_for: LimitFor = json_limit) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.limit_for(scope["method"], scope["path"])
        if rule is None:
            await self.app(scope, receive, send)
            return
        limit, detail = rule
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            headers = dict(scope["headers"])
            # A client waiting for "100 Continue" has sent nothing: answer at once.
            if headers.get(b"expect", b"").lower() != b"100-continue":
                await _drain(receive, int(declared))
            await self._refuse(scope, receive, send, BodyTooLarge(detail))
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body", False):
                        await _drain(receive, None)
                    raise BodyTooLarge(detail)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:  # raised where no exception handler caught it
            if started:
                raise
            await self._refuse(scope, receive, send, exc)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, exc: BodyTooLarge) -> None:
        response = JSONResponse(
            error_body("payload_too_large", str(exc.detail)),
            status_code=413,
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


# Before a 413, read (and drop) a bounded part of the rest of the body: the connection is
# closed after the answer, and a client still sending into a closed socket gets a reset that
# can swallow the answer. A body far past the limit, or a stalled one, is cut off.
DRAIN_MAX = 32 * MIB
DRAIN_IDLE = 0.5


async def _drain(receive: Receive, declared: int | None) -> None:
    if declared is not None and declared > DRAIN_MAX:
        return
    drained = 0
    while drained <= DRAIN_MAX:
        try:
            message = await asyncio.wait_for(receive(), DRAIN_IDLE)
        except TimeoutError:
            return
        if message["type"] != "http.request":
            return
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class RateLimiter:
    """A token bucket per client: `per_minute` requests a minute, bursts up to `burst`.

    `check(key)` takes a token and returns 0.0, or the seconds until one is there (Retry-After).
    The clock is injectable, so tests run without sleeping.
    """

    MAX_CLIENTS = 10_000

    def __init__(
        self,
        per_minute: float,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst if burst is not None else max(1.0, per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def check(self, key: str) -> float:
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._prune(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate if self.rate > 0 else math.inf

    def _prune(self, now: float) -> None:
        """Forget clients whose bucket is full again (memory stays bounded)."""
        if len(self._buckets) <= self.MAX_CLIENTS:
            return
        full = [
            k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst
        ]
        for key in full:
            del self._buckets[key]
