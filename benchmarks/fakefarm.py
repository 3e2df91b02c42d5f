"""Many fake render nodes in one process (tests/fake_node.py), for the scale benchmarks.

    python -m benchmarks.fakefarm --port 9000 --nodes 100 --slots 2 --seconds 0.001

Node i answers under http://127.0.0.1:9000/n/{i}; each speaks the render-node API and
"renders" by sleeping, serving a tiny generated PNG per frame. GET /stats lists when each
node received each batch, which is when dispatch really happened, and every request.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fake_node import FakeNode, fake_farm_app


class SubmitLog:
    """ASGI middleware noting when each node received each batch (POST /n/{i}/jobs), and
    every request a node received: [unix time, node index, method, what] where `what` is the
    path's first part after the node (jobs, scenes, info, health...)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.submits: list[tuple[float, int]] = []
        self.requests: list[tuple[float, int, str, str]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            parts = scope["path"].strip("/").split("/")
            if len(parts) >= 3 and parts[0] == "n" and parts[1].isdigit():
                now, node = time.time(), int(parts[1])
                self.requests.append((now, node, scope["method"], parts[2]))
                if len(parts) == 3 and parts[2] == "jobs" and scope["method"] == "POST":
                    self.submits.append((now, node))
        await self.app(scope, receive, send)


def farm_app(nodes: list[FakeNode]) -> SubmitLog:
    """The fake nodes, plus GET /stats: every batch submit as [unix time, node index]."""
    log: SubmitLog

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({"submits": log.submits, "requests": log.requests})

    inner = fake_farm_app(nodes)
    app = Starlette(routes=[Route("/stats", stats), *inner.routes])
    log = SubmitLog(app)
    return log


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
