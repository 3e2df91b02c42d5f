"""A render node that lies: the fake node's app (tests/fake_node.py) behind an ASGI layer that
rewrites its answers the way a broken or hostile node would.

    node = FakeNode("evil")
    app = hostile(create_fake_node_app(node), "nan")

Modes (what the orchestrator must survive, each found by hand first, issue 16):
- `nan`: status answers say `"seconds": NaN` for done frames (Python's JSON reader takes it).
- `infinity`: `"seconds": Infinity`.
- `junk`: status answers with `"frame": "one"` and the counts as strings.
- `huge`: status answers padded with megabytes of whitespace (still valid JSON).
- `drip-status`: status answers come a byte every 0.2 s (each read is quick, the whole is not).
- `phantom`: status answers say every frame done at once; frames.tar holds none of them.
- `slots`: /info claims 300,000 render slots.
- `drip`: frames.tar sends its first bytes, then one byte every 0.2 s, for ever.
- `not-image`: frames.tar members are HTML pages under the frames' names.
- `oversize`: frames.tar members of `OVERSIZE_BYTES` each.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farm_common.frames import parse_frame_spec
from farm_common.protocol import frame_name
from render_node.archive import END, padding, tar_header

MODES = (
    "nan", "infinity", "junk", "huge", "drip-status", "phantom", "slots", "drip", "not-image",
    "oversize",
)  # fmt: skip
_STATUS_MODES = ("nan", "infinity", "junk", "huge", "phantom")
HUGE_PADDING = 3 << 20  # whitespace added to a status answer
OVERSIZE_BYTES = 3 << 20
ABSURD_SLOTS = 300_000
DRIP_SECONDS = 0.2
_STATUS = re.compile(r"^/jobs/[^/]+$")
_ARCHIVE = re.compile(r"^/jobs/[^/]+/frames\.tar$")


def hostile(app: ASGIApp, mode: str) -> ASGIApp:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: one of {MODES}")

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await app(scope, receive, send)
            return
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        if _STATUS.match(path) and mode in _STATUS_MODES:
            await _rewritten(app, scope, receive, send, lambda body: _status(body, mode))
        elif _STATUS.match(path) and mode == "drip-status":
            await _rewritten(app, scope, receive, send, lambda body: body, drip=True)
        elif path == "/info" and mode == "slots":
            await _rewritten(app, scope, receive, send, _absurd_slots)
        elif _ARCHIVE.match(path) and mode in ("drip", "not-image", "oversize", "phantom"):
            await _archive(app, scope, receive, send, mode)
        else:
            await app(scope, receive, send)

    return serve


def _status(body: bytes, mode: str) -> bytes:
    if mode == "huge":
        return body[:-1] + b" " * HUGE_PADDING + body[-1:]
    answer = json.loads(body)
    if mode == "phantom":
        total = len(answer["frames"])
        answer["frames"] = [
            {"frame": item["frame"], "state": "done", "seconds": 0.01} for item in answer["frames"]
        ]
        answer["counts"] = {
            "total": total,
            "pending": 0,
            "rendering": 0,
            "done": total,
            "failed": 0,
        }
        return json.dumps(answer).encode()
    for item in answer.get("frames", []):
        if mode == "junk":
            item["frame"] = "one"
        elif item.get("seconds") is not None:
            item["seconds"] = float("nan") if mode == "nan" else float("inf")
    if mode == "junk":
        answer["counts"] = {k: str(v) for k, v in answer["counts"].items()}
    return json.dumps(answer).encode()  # allow_nan: NaN and Infinity as Python writes them


def _absurd_slots(body: bytes) -> bytes:
    answer = json.loads(body)
    answer["slots"] = ABSURD_SLOTS
    return json.dumps(answer).encode()


async def _rewritten(
    app: ASGIApp, scope: Scope, receive: Receive, send: Send, change: Any, *, drip: bool = False
) -> None:
    """Run the fake node's answer through `change` when it is a 200; `drip`: send it a byte
    every DRIP_SECONDS."""
    start: Message = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
        else:
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    body = b"".join(chunks)
    if start.get("status") == 200:
        body = change(body)
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    if drip and start.get("status") == 200:
        for byte in body[:-1]:
            await send({"type": "http.response.body", "body": bytes([byte]), "more_body": True})
            await asyncio.sleep(DRIP_SECONDS)
        body = body[-1:]
    await send({"type": "http.response.body", "body": body})


async def _archive(app: ASGIApp, scope: Scope, receive: Receive, send: Send, mode: str) -> None:
    """frames.tar as the mode makes it, for the frames asked for (a 200 always)."""
    query = parse_qs(scope.get("query_string", b"").decode())
    frames = parse_frame_spec(query.get("frames", ["1"])[0])
    headers = [(b"content-type", b"application/x-tar")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if mode == "drip":
        image = b"\x89PNG\r\n\x1a\n" + bytes(1000)
        stream = tar_header(frame_name(frames[0], ".png"), len(image), 0) + image
        await send({"type": "http.response.body", "body": stream[:600], "more_body": True})
        for byte in stream[600:]:
            await asyncio.sleep(0.2)
            await send({"type": "http.response.body", "body": bytes([byte]), "more_body": True})
        await asyncio.Event().wait()  # and then nothing, for ever
    if mode == "phantom":  # a well-formed archive, of none of the frames the node said done
        await send({"type": "http.response.body", "body": END})
        return
    for frame in frames:
        if mode == "not-image":
            data = f"<html><body>frame {frame}</body></html>".encode()
        else:
            data = b"\x89PNG\r\n\x1a\n" + bytes(OVERSIZE_BYTES)
        part = tar_header(frame_name(frame, ".png"), len(data), 0) + data + padding(len(data))
        await send({"type": "http.response.body", "body": part, "more_body": True})
    await send({"type": "http.response.body", "body": END})
