"""Many fake render nodes in one process (tests/fake_node.py), for the scale benchmarks.

    python -m benchmarks.fakefarm --port 9000 --nodes 100 --slots 2 --seconds 0.001

Node i answers under http://127.0.0.1:9000/n/{i}; each speaks the render-node API and
"renders" by sleeping, serving a tiny generated PNG per frame. GET /stats lists when each
node received each batch, which is when dispatch really happened, and every request.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_node import FakeNode, fake_farm_app


def requests_seen(nodes: list[FakeNode]) -> list[tuple[float, int, str, str]]:
    """Every request the nodes received (their own logs), in order: [unix time, node index,
    method, what], `what` the path's first part after the node (jobs, scenes, info...)."""
    seen = []
    for i, node in enumerate(nodes):
        for t, asked in node.requests:
            method, path = asked.split(" ", 1)
            seen.append((t, i, method, path.strip("/").split("/", 1)[0]))
    return sorted(seen)


# One call of every endpoint a node has, none of which changes what the node holds.
_NOSUCH = "0" * 64
WARM_UP = [
    ("GET", "/health", None),
    ("GET", "/info", None),
    ("HEAD", f"/scenes/{_NOSUCH}", None),
    ("PUT", f"/scenes/{_NOSUCH}", b"not this scene"),
    ("POST", "/jobs", {"scene": f"sha256:{_NOSUCH}", "frames": "1"}),
    ("GET", "/jobs/nosuch", None),
    ("DELETE", "/jobs/nosuch", None),
    ("GET", "/jobs/nosuch/frames/1", None),
    ("GET", "/jobs/nosuch/frames.tar?frames=1", None),
    ("GET", "/jobs/nosuch/log", None),
]


async def warm_up(app: Any, nodes: list[FakeNode]) -> None:
    """Call every endpoint of every node once, before the farm serves. FastAPI reads an
    endpoint's source on its first call (error context); a real node pays that once per
    endpoint in its own process, while 100 apps in this one would pay it 1,000 times in
    the middle of the benchmark's opening burst."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://farm") as client:
        for i in range(len(nodes)):
            for method, path, body in WARM_UP:
                content = body if isinstance(body, bytes) else None
                data = body if isinstance(body, dict) else None
                await client.request(method, f"/n/{i}{path}", content=content, json=data)
    for node in nodes:
        node.scene_heads = 0
        node.requests.clear()


def farm_app(nodes: list[FakeNode]) -> Starlette:
    """The fake nodes, plus GET /stats: every request the nodes received (requests_seen), and
    every batch submit among them as [unix time, node index]: when dispatch really happened."""

    async def stats(request: Request) -> JSONResponse:
        seen = requests_seen(nodes)
        submits = [(t, i) for t, i, method, what in seen if (method, what) == ("POST", "jobs")]
        return JSONResponse({"submits": submits, "requests": seen})

    inner = fake_farm_app(nodes)
    asyncio.run(warm_up(inner, nodes))
    return Starlette(routes=[Route("/stats", stats), *inner.routes])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.fakefarm", description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--seconds", type=float, default=0.001, help="seconds a frame")
    args = p.parse_args(argv)
    nodes = [
        FakeNode(f"n{i}", slots=args.slots, seconds_per_frame=args.seconds)
        for i in range(args.nodes)
    ]
    uvicorn.run(
        farm_app(nodes), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on"
    )


if __name__ == "__main__":
    main()
