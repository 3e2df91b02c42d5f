"""Overhead: bare `blender -b ... -a` against the farm with one node using the same threads.

How a farm run is counted: the orchestrator and the node are started (fresh data folders) before
the clock starts, as a farm that is already up. The clock starts before the scene upload
(POST /scenes, multipart) and stops at the job's `finished` time, which the orchestrator
records when the last batch settles, after its last frame was downloaded and recorded: upload,
batching, scene push to the node, dispatch, every Blender start-up, status polling and frame
collection are all inside. Both clocks are this machine's wall clock. The client polls
GET /render/{id} only every 0.25 s, so the poller steals no CPU from Blender.

Runs alternate bare / farm (/ farm with one batch, a diagnostic) so a noisy neighbour hits
all of them alike; the table shows medians and the ratio of medians, and each run's own ratio.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    ROOT,
    console,
    cpu_seconds,
    median,
    table,
    tree_cpu_seconds,
    write_results,
)
from benchmarks.procs import proc_farm, submit, upload, wait_final

SCENE = ROOT / "scenes" / "demo.blend"


def bare_run(blender: str, scene: Path, out: Path, threads: int, first: int, last: int) -> float:
    argv = [
        blender, "-b", str(scene), "-o", str(out / "frame_#####"), "-F", "PNG",
        "-t", str(threads), "-s", str(first), "-e", str(last), "-a",
    ]  # fmt: skip
    start = time.time()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    seconds = time.time() - start
    made = len(list(out.glob("frame_*.png")))
    if made != last - first + 1:
        raise RuntimeError(f"bare Blender wrote {made} frames, not {last - first + 1}")
    return seconds


def farm_run(
    blender: str, scene: Path, root: Path, threads: int, frames: str, batch_size: int | None
) -> dict[str, Any]:
    scenes_dir = root / "scenes"
    scenes_dir.mkdir(parents=True)
    with proc_farm(root) as farm:
        orch = farm.start_orchestrator(scenes_dir)
        node = farm.start_node(scenes_dir, blender=blender, threads=threads)
        with httpx.Client(base_url=farm.url, timeout=30) as client:
            farm.wait_nodes(client, 1)
            cpu0 = tree_cpu_seconds(orch.process.pid), cpu_seconds(node.process.pid)
            start = time.time()
            sha = upload(client, scene)
            extra = {"batch_size": batch_size} if batch_size else {}
            job = submit(client, sha, frames, **extra)
            status = wait_final(client, job["id"], timeout=600, every=0.25)
            seen_end = time.time()
            cpu1 = tree_cpu_seconds(orch.process.pid), cpu_seconds(node.process.pid)
    if status["state"] != "completed":
        raise RuntimeError(f"farm job ended {status['state']}: {status.get('error')}")
    return {
        "seconds": status["finished"] - start,
        "seconds_client_seen": seen_end - start,
        "frames_done": status["frames"]["done"],
        "batch_size": job["batch_size"],
        "batches": len(status["batches"]),
        "orchestrator_cpu_seconds": cpu1[0] - cpu0[0],
        "node_cpu_seconds": cpu1[1] - cpu0[1],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.overhead", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--frames", type=int, default=24, help="frames 1..N of the scene")
    p.add_argument("--blender", default="/usr/bin/blender")
    p.add_argument("--scene", type=Path, default=SCENE)
    p.add_argument(
        "--one-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run the farm with batch_size=N (one Blender start-up): a diagnostic",
    )
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        for i in range(args.runs):
            run: dict[str, Any] = {"run": i + 1}
            out = Path(tmp) / f"bare{i}"
            out.mkdir()
            run["bare"] = bare_run(args.blender, args.scene, out, args.threads, 1, args.frames)
            farm = farm_run(
                args.blender, args.scene, Path(tmp) / f"farm{i}", args.threads,
                f"1-{args.frames}", None,
            )  # fmt: skip
            run["farm"] = farm["seconds"]
            run["farm_client_seen"] = farm["seconds_client_seen"]
            run["farm_batches"] = farm["batches"]
            run["farm_batch_size"] = farm["batch_size"]
            run["farm_orchestrator_cpu"] = farm["orchestrator_cpu_seconds"]
            run["farm_node_cpu"] = farm["node_cpu_seconds"]
            if args.one_batch:
                one = farm_run(
                    args.blender, args.scene, Path(tmp) / f"one{i}", args.threads,
                    f"1-{args.frames}", args.frames,
                )  # fmt: skip
                run["farm_one_batch"] = one["seconds"]
            run["ratio"] = run["farm"] / run["bare"]
            if args.one_batch:
                run["ratio_one_batch"] = run["farm_one_batch"] / run["bare"]
            console.print(f"run {i + 1}: {run}")
            runs.append(run)

    bare = median([r["bare"] for r in runs])
    farm_m = median([r["farm"] for r in runs])
    figures: dict[str, Any] = {
        "threads": args.threads,
        "frames": args.frames,
        "runs": runs,
        "median_bare_seconds": bare,
        "median_farm_seconds": farm_m,
        "ratio_of_medians": farm_m / bare,
        "median_in_run_ratio": median([r["ratio"] for r in runs]),
        "farm_batch_size": runs[0]["farm_batch_size"],
        "farm_batches": runs[0]["farm_batches"],
        "target_ratio": 1.05,
    }
    rows: list[list[Any]] = [
        ["bare blender -a", bare, 1.0, 1.0, 1],
        [f"farm, auto batch ({figures['farm_batch_size']})", farm_m, farm_m / bare,
         figures["median_in_run_ratio"], figures["farm_batches"]],
    ]  # fmt: skip
    if args.one_batch:
        one_m = median([r["farm_one_batch"] for r in runs])
        figures["median_farm_one_batch_seconds"] = one_m
        figures["ratio_one_batch_of_medians"] = one_m / bare
        figures["median_in_run_ratio_one_batch"] = median([r["ratio_one_batch"] for r in runs])
        rows.append([f"farm, batch_size={args.frames}", one_m, one_m / bare,
                     figures["median_in_run_ratio_one_batch"], 1])  # fmt: skip
    table(
        f"overhead: {args.frames} frames of {args.scene.name}, -t {args.threads}, "
        f"median of {args.runs} alternated runs",
        ["run", "median s", "ratio of medians", "median in-run ratio", "Blender start-ups"],
        rows,
    )
    figures["target_met"] = figures["median_in_run_ratio"] <= 1.05
    write_results("overhead", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
