"""`make demo`: start a three-node local farm, render scenes/demo.blend into ./renders, stop.

Prints where the frames are and how long the render took.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from rich.console import Console

from orchestrator.client.api import FarmClient, FarmClientError
from orchestrator.client.cli import follow
from orchestrator.client.local import LocalCluster

console = Console()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.client.demo")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--frames", default="1-24")
    parser.add_argument("--scene", default="scenes/demo.blend")
    parser.add_argument("--out", default="renders")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--blender",
        help="the nodes' Blender: bpy, bpy:PYTHON or a blender executable "
        "(default: bpy when installed, else blender on PATH)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    scene = Path(args.scene)
    if not scene.is_file():
        console.print(f"[red]{scene} not found: run `make demo` from the repository root")
        return 2
    cluster = LocalCluster(nodes=args.nodes, port=args.port, blender=args.blender)
    console.print(f"starting a local farm: 1 orchestrator + {args.nodes} render nodes")
    try:
        cluster.start()
        console.print(f"farm up at {cluster.url}; rendering {scene} frames {args.frames}")
        started = time.monotonic()
        with FarmClient(cluster.url, cluster.token) as client:
            job_id = client.submit(client.upload_scene(scene), args.frames)
            code = follow(client, job_id, Path(args.out))
        took = time.monotonic() - started
        files = sorted(Path(args.out).glob("frame_*"))
        console.print(
            f"[bold]{len(files)} frames in {Path(args.out).resolve()}[/] "
            f"(render took {took:.1f} s on {args.nodes} nodes)"
        )
        return code
    except (FarmClientError, RuntimeError, TimeoutError) as exc:
        console.print(f"[red]demo failed: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        cluster.stop()


if __name__ == "__main__":
    sys.exit(main())
