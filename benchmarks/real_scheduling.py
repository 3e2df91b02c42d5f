"""Scheduling efficiency with real Blender: three nodes of unequal speed, 60 frames of
scenes/demo.blend, no batch size given (the orchestrator sizes batches itself).

The nodes are real `render-node` processes on this machine with `--threads 1`, `--threads 1`,
`--threads 2` (one slot each): on 2 cores the four render threads share the CPU, so the third
node renders about twice as fast as each of the others. Each run renders the job twice, once
on a farm of `--blender bpy` nodes (warm slots, Blender 5.0) and once on a farm of `--blender
/usr/bin/blender` nodes (a Blender per batch, 3.4), each on a fresh farm (orchestrator and
nodes started before the clock; nothing known of the nodes' speeds). The order of the two turns
from run to run.

Makespan: from POST /render (the scene is in the shared scenes folder, named) to the job's
`finished` time (the orchestrator's clock, same machine): when the last frame was collected.

Node speed, measured in the same job: after it, GET /render/ID/frames lists every frame with
its node and its `seconds` (the node's render time of that frame: from Blender starting the
frame to the file verified on disk; no start-up, no round trips). A node's speed is the frames
it rendered over the sum of their seconds (frames per second of pure rendering). The bound is
frames / sum of the three speeds: the makespan if every node rendered from the first instant to
the last with no start-up, no gap and a perfectly shared tail. Efficiency = bound / makespan.
The speeds are averages over the job; a node rendering alone at the end runs faster than while
sharing the CPU, which makes the bound a little optimistic (efficiency errs low).

Batches, warm batches and start-ups come from each node's log (benchmarks/nodelog.py): a batch
is warm when its node started no Blender for it (its slot's worker held the scene loaded); its
start-up is from the batch getting its slot to its first frame starting. Lost to start-ups =
sum of all batches' start-ups / (nodes x makespan).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, Stopwatch, console, median, table, write_results
from benchmarks.nodelog import node_jobs
from benchmarks.procs import proc_farm, submit, wait_final

SCENE = ROOT / "scenes" / "demo.blend"
THREADS = (1, 1, 2)
FRAMES = 60
TARGET = 0.95


def run_job(
    engine: str, scene: Path, root: Path, threads: tuple[int, ...], frames: int
) -> dict[str, Any]:
    """One fresh farm of `len(threads)` nodes on `engine`, one job of `frames` frames."""
    scenes = root / "scenes"
    scenes.mkdir(parents=True)
    shutil.copy(scene, scenes / "demo.blend")
    with proc_farm(root) as farm:
        farm.start_orchestrator(scenes)
        for count in threads:
            farm.start_node(scenes, blender=engine, threads=count, job_log=True)
        urls = [node.url for node in farm.nodes]
        with httpx.Client(base_url=farm.url, timeout=30) as client:
            farm.wait_nodes(client, len(threads))
            version = httpx.get(urls[0] + "/info", timeout=10).json().get("blender_version")
            start = time.time()
            job = submit(client, "demo.blend", f"1-{frames}")
            status = wait_final(client, job["id"], timeout=1800, every=0.25)
            listed = client.get(f"/render/{job['id']}/frames").raise_for_status().json()
        logs = [node_jobs(node.output()) for node in farm.nodes]
    if status["state"] != "completed" or status["frames"]["done"] != frames:
        raise RuntimeError(f"job ended {status['state']}: {status.get('error')}")
    makespan = status["finished"] - start

    nodes: list[dict[str, Any]] = []
    for url, count, jobs in zip(urls, threads, logs, strict=True):
        done = [f for f in listed["frames"] if f.get("node") == url and f["state"] == "done"]
        seconds = sum(f.get("seconds") or 0.0 for f in done)
        ran = [j for j in jobs.values() if j.running is not None]
        startups = [j.startup_seconds for j in ran if j.startup_seconds is not None]
        nodes.append({
            "threads": count,
            "frames": len(done),
            "render_seconds": seconds,
            "speed_frames_per_second": len(done) / seconds if seconds > 0 else None,
            "batches": sum(1 for b in status["batches"] if b["node"] == url),
            "node_jobs": len(ran),
            "warm_batches": sum(j.warm for j in ran),
            "blender_starts": sum(j.launches for j in ran),
            "startup_seconds": sum(startups),
            "startup_seconds_each": [round(s, 3) for s in startups],
            "batch_sizes": [len(j.frames) for j in sorted(ran, key=lambda j: j.running or 0)],
        })  # fmt: skip
    rate = sum(n["speed_frames_per_second"] or 0.0 for n in nodes)
    bound = frames / rate
    lost = sum(n["startup_seconds"] for n in nodes)
    return {
        "engine": engine,
        "blender_version": version,
        "makespan": makespan,
        "bound": bound,
        "efficiency": bound / makespan,
        "batch_size_first": job["batch_size"],
        "batches": len(status["batches"]),
        "nodes": nodes,
        "startup_seconds_total": lost,
        "lost_to_startups": lost / (len(nodes) * makespan),
        "render_utilization": sum(n["render_seconds"] for n in nodes) / (len(nodes) * makespan),
        "frames_done": status["frames"]["done"],
    }


def per_node(run: dict[str, Any], key: str, form: str = "{}") -> str:
    return " / ".join(form.format(n[key]) for n in run["nodes"])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.real_scheduling", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--threads", type=int, nargs="+", default=list(THREADS),
                   help="--threads of each node (one node each)")  # fmt: skip
    p.add_argument("--bpy", default="bpy", help="the warm engine: bpy or bpy:PYTHON")
    p.add_argument("--blender", default="/usr/bin/blender", help="the binary engine")
    p.add_argument("--scene", type=Path, default=SCENE)
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    threads = tuple(args.threads)
    clock = Stopwatch()

    engines = {"bpy": args.bpy, "binary": args.blender}
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    with tempfile.TemporaryDirectory(prefix="bench-realsched-") as tmp:
        for i in range(args.runs):
            order = list(engines) if i % 2 == 0 else list(reversed(engines))
            for name in order:
                r = run_job(engines[name], args.scene, Path(tmp) / f"{name}{i}", threads,
                            args.frames)  # fmt: skip
                r["run"], r["order"] = i + 1, order
                results[name].append(r)
                console.print(
                    f"{name} run {i + 1}: makespan {r['makespan']:.2f} s, bound "
                    f"{r['bound']:.2f} s, efficiency {r['efficiency']:.3f}, batches "
                    f"{per_node(r, 'batches')}, warm {per_node(r, 'warm_batches')}, "
                    f"lost to start-ups {r['lost_to_startups']:.3f}"
                )

    figures: dict[str, Any] = {
        "frames": args.frames,
        "threads_per_node": list(threads),
        "scene": str(args.scene),
        "target_efficiency": TARGET,
    }
    rows: list[list[Any]] = []
    node_rows: list[list[Any]] = []
    for name, runs in results.items():
        summary = {
            "engine": engines[name],
            "blender_version": runs[0]["blender_version"],
            "runs": runs,
            "median_makespan_seconds": median([r["makespan"] for r in runs]),
            "median_bound_seconds": median([r["bound"] for r in runs]),
            "median_efficiency": median([r["efficiency"] for r in runs]),
            "median_lost_to_startups": median([r["lost_to_startups"] for r in runs]),
            "median_render_utilization": median([r["render_utilization"] for r in runs]),
        }
        figures[name] = summary
        for r in runs:
            label = f"{name} ({r['blender_version']}), run {r['run']}"
            rows.append([label, r["makespan"], r["bound"], r["efficiency"],
                         r["startup_seconds_total"], r["lost_to_startups"]])  # fmt: skip
            node_rows.append([
                label, per_node(r, "batches"), per_node(r, "warm_batches"),
                per_node(r, "frames"), per_node(r, "speed_frames_per_second", "{:.2f}"),
            ])  # fmt: skip
        rows.append([
            f"{name}: median", summary["median_makespan_seconds"],
            summary["median_bound_seconds"], summary["median_efficiency"], None,
            summary["median_lost_to_startups"],
        ])  # fmt: skip
    figures["target_met"] = figures["bpy"]["median_efficiency"] >= TARGET
    table(
        f"real scheduling: {args.frames} frames of {args.scene.name} on nodes of --threads "
        f"{'/'.join(map(str, threads))}, no batch size; {args.runs} runs",
        ["engine, run", "makespan s", "bound s", "efficiency", "start-ups s", "lost to them"],
        rows,
    )
    table(
        "per node (--threads " + " / ".join(map(str, threads)) + ")",
        ["engine, run", "batches", "warm", "frames", "frames/s"],
        node_rows,
    )
    figures["duration_seconds"] = clock.elapsed()
    write_results("real_scheduling", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
