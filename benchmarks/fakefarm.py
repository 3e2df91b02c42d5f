"""Many fake render nodes in one process (tests/fake_node.py), for the scale benchmarks.

    python -m benchmarks.fakefarm --port 9000 --nodes 100 --slots 2 --seconds 0.001

Node i answers under http://127.0.0.1:9000/n/{i}; each speaks the render-node API and
"renders" by sleeping, serving a tiny generated PNG per frame.
"""

from __future__ import annotations

import argparse

import uvicorn

from tests.fake_node import FakeNode, fake_farm_app


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
        fake_farm_app(nodes), host="127.0.0.1", port=args.port, log_level="warning", lifespan="on"
    )


if __name__ == "__main__":
    main()
