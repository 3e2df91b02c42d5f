"""Split stills: one 640x480 frame rendered whole on one node, and on three in 9 and 16 tiles and
in 3 parts of its samples.

Two parts, each on fresh farms of real processes (orchestrator and `render-node` CLIs,
registered over HTTP; started before the clock):

1. Equal nodes (stand-in Blender). Three nodes of exactly equal speed cannot share this
   machine's 2 cores, so here Blender is a stand-in: a frame takes `--seconds` (a region its
   share by area, a sample part its share of the samples: FAKE_BLENDER_BY_AREA) and writes a
   real 640x480 image (a region: its part of it; a sample part: the float mean of its samples,
   which a node then develops). By default the nodes are warm-engine nodes (`--blender
   bpy:tests/fake_bpy/python`, as `--blender auto` picks bpy): `--startup` seconds to import
   it, once a slot; `--fake-engine binary` (tests/fake_blender.py) pays it every batch, as the
   Blender binary does. The speed-up is then the farm's own: what dispatching pieces,
   collecting, stitching, merging and developing cost.
2. Real Blender: scenes/demo_still.blend (640x480, 128 samples, dither off) on `--blender`
   nodes of `--threads 1` each: one node whole, three nodes split. Three single-thread nodes
   on 2 cores render at most twice as fast as one, so the speed-up is shown beside that
   ceiling. The stitched (or merged and developed) frame is compared with the one-node frame:
   max and mean absolute difference (0-255) and PSNR (none when identical).

Render seconds: each piece's render time on its node, all told (GET /render/ID/frames), the
whole frame's for the one-node render: their ratio says what splitting adds to the work (each
piece is a render of its own). For tiles, each region's too (GET /render/ID/frames/1/tiles):
the slowest region's share says how far the last region to finish can hold up the frame.

Makespan: from POST /render (the scene in the shared scenes folder) to the job's `finished`
time (the orchestrator's clock, same machine): when the frame was stitched (or merged and
developed) and recorded.
Speed-up = one-node makespan / three-node makespan, per run; medians over `--runs`.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import OpenImageIO as oiio

from benchmarks.common import ROOT, Stopwatch, console, median, table, write_results
from benchmarks.procs import FAKE_BLENDER, FAKE_BPY_PYTHON, proc_farm, submit, wait_final
from farm_common.protocol import frame_name

SCENE = ROOT / "scenes" / "demo_still.blend"
SCENE_SAMPLES = 128  # demo_still.blend's (the stand-in times a sample part by them)
TILES = (9, 16)
SAMPLE_PARTS = (3,)
NODES = 3
TARGET_SPEEDUP = 2.6


def splits(tiles: tuple[int, ...], parts: tuple[int, ...]) -> dict[str, dict[str, int]]:
    """Each split tried, by its name in the results ("9": 9 tiles, "samples3": 3 parts), as
    POST /render's fields."""
    named = {str(n): {"tiles": n} for n in tiles}
    named.update({f"samples{n}": {"split_samples": n} for n in parts})
    return named


def render(
    root: Path,
    scene: Path,
    *,
    nodes: int,
    split: dict[str, int],
    blender: str,
    env: dict[str, str],
) -> dict[str, Any]:
    """Frame 1 of `scene` on a fresh farm of `nodes` one-slot, one-thread nodes, `split` as
    POST /render takes it (none: whole). Returns the makespan and where the frame is."""
    scenes = root / "scenes"
    scenes.mkdir(parents=True)
    shutil.copy(scene, scenes / "still.blend")
    with proc_farm(root) as farm:
        farm.start_orchestrator(scenes)
        for _ in range(nodes):
            farm.start_node(scenes, blender=blender, threads=1, env=env)
        with httpx.Client(base_url=farm.url, timeout=30) as client:
            farm.wait_nodes(client, nodes)
            start = time.time()
            job = submit(client, "still.blend", "1", **split)
            status = wait_final(client, job["id"], timeout=3600, every=0.1)
            if status["state"] != "completed":
                raise RuntimeError(f"job ended {status['state']}: {status.get('error')}")
            frame = client.get(f"/render/{job['id']}/frames").json()["frames"][0]
            regions = None
            if split.get("tiles", 1) > 1:
                listed = client.get(f"/render/{job['id']}/frames/1/tiles").json()["tiles"]
                regions = [round(t["seconds"], 3) for t in listed]
    return {
        "nodes": nodes,
        **split,
        "makespan": status["finished"] - start,
        "nodes_used": len(status["nodes"]),
        # The pieces' render seconds on their nodes, all told (from a frame's start to its
        # file on disk): what splitting adds to the frame's work; each region's, how unequal.
        "render_seconds": frame["seconds"],
        "region_seconds": regions,
        "frame": str(root / "orch" / "renders" / job["id"] / frame_name(1, ".png")),
    }


def difference(a: str, b: str) -> dict[str, Any]:
    """How far frame `a` is from frame `b`, in 8-bit levels."""
    comparison = oiio.ImageBufAlgo.compare(oiio.ImageBuf(a), oiio.ImageBuf(b), 0.0, 0.0)
    mse = comparison.rms_error**2
    return {
        "identical": comparison.nfail == 0,
        "max_abs": comparison.maxerror * 255,
        "mean_abs": comparison.meanerror * 255,
        "psnr_db": None if mse == 0 else 10 * math.log10(1 / mse),
        "pixels_differing": comparison.nfail,
    }


def part(
    name: str,
    root: Path,
    runs: int,
    scene: Path,
    blender: str,
    env: dict[str, str],
    tried: dict[str, dict[str, int]],
) -> dict[str, Any]:
    """`runs` rounds of: the frame whole on one node, then in each split `tried` on NODES
    nodes."""
    rounds: list[dict[str, Any]] = []
    for i in range(runs):
        whole = render(root / f"{name}{i}-whole", scene, nodes=1, split={}, blender=blender,
                       env=env)  # fmt: skip
        tiled: dict[str, dict[str, Any]] = {}
        for label, split in tried.items():
            run = render(root / f"{name}{i}-{label}", scene, nodes=NODES, split=split,
                         blender=blender, env=env)  # fmt: skip
            run["speedup"] = whole["makespan"] / run["makespan"]
            run["work_ratio"] = run["render_seconds"] / whole["render_seconds"]
            regions = run["region_seconds"]
            run["slowest_region_share"] = regions and max(regions) / run["render_seconds"]
            run["difference"] = difference(run["frame"], whole["frame"])
            tiled[label] = run
            slowest = f", slowest region {run['slowest_region_share']:.1%}" if regions else ""
            console.print(
                f"{name} run {i + 1}, {label}: {run['makespan']:.2f} s against "
                f"{whole['makespan']:.2f} s whole: speed-up {run['speedup']:.2f}, identical "
                f"{run['difference']['identical']} (max {run['difference']['max_abs']:.0f}); "
                f"pieces' render time / whole frame's {run['work_ratio']:.2f}" + slowest
            )
        rounds.append({"run": i + 1, "whole": whole, "tiled": tiled})
    summary: dict[str, Any] = {"runs": rounds}
    summary["median_whole_seconds"] = median([r["whole"]["makespan"] for r in rounds])
    for label in tried:
        summary[f"median_speedup_{label}"] = median([r["tiled"][label]["speedup"] for r in rounds])
        summary[f"median_seconds_{label}"] = median([r["tiled"][label]["makespan"] for r in rounds])
        summary[f"all_identical_{label}"] = all(
            r["tiled"][label]["difference"]["identical"] for r in rounds
        )
        summary[f"max_abs_{label}"] = max(
            r["tiled"][label]["difference"]["max_abs"] for r in rounds
        )
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.still", description=__doc__)
    p.add_argument("--runs", type=int, default=3, help="rounds of the equal-nodes part")
    p.add_argument("--real-runs", type=int, default=3, help="rounds with real Blender (0: none)")
    p.add_argument("--seconds", type=float, default=60.0, help="stand-in: a whole frame")
    p.add_argument("--startup", type=float, default=0.6, help="stand-in Blender: start-up")
    p.add_argument("--fake-engine", choices=["bpy", "binary"], default="bpy")
    p.add_argument(
        "--blender", default="bpy", help="the real part's engine (render-node --blender)"
    )
    p.add_argument("--scene", type=Path, default=SCENE)
    p.add_argument("--tiles", type=int, nargs="*", default=list(TILES), help="tilings tried")
    p.add_argument(
        "--split-samples", type=int, nargs="*", default=list(SAMPLE_PARTS),
        help="sample splits tried",
    )  # fmt: skip
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    clock = Stopwatch()
    fake_env = {
        "FAKE_BLENDER_SECONDS": str(args.seconds),
        "FAKE_BLENDER_STARTUP": str(args.startup),
        "FAKE_BLENDER_BY_AREA": "1",
        "FAKE_BLENDER_SIZE": "640x480",
        "FAKE_BLENDER_SAMPLES": str(SCENE_SAMPLES),
    }
    tried = splits(tuple(args.tiles), tuple(args.split_samples))
    figures: dict[str, Any] = {
        "nodes": NODES, "tiles": args.tiles, "split_samples": args.split_samples,
        "target": TARGET_SPEEDUP,
    }  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-still-") as tmp:
        root = Path(tmp)
        fake = str(FAKE_BLENDER) if args.fake_engine == "binary" else f"bpy:{FAKE_BPY_PYTHON}"
        equal = part("equal", root, args.runs, args.scene, fake, fake_env, tried)
        equal.update(seconds=args.seconds, startup=args.startup, engine=args.fake_engine)
        figures["equal_nodes"] = equal
        if args.real_runs:
            real = part("real", root, args.real_runs, args.scene, args.blender, {}, tried)
            real.update(blender=args.blender, scene=str(args.scene), ceiling=2.0)
            figures["real_blender"] = real
    figures["target_met"] = all(
        equal[f"median_speedup_{label}"] >= TARGET_SPEEDUP for label in tried
    )
    rows: list[list[Any]] = []
    for label, key in (
        ("equal nodes (stand-in)", "equal_nodes"),
        ("real Blender", "real_blender"),
    ):
        if key not in figures:
            continue
        summary = figures[key]
        for r in summary["runs"]:
            for tiles, run in r["tiled"].items():
                diff = run["difference"]
                rows.append([f"{label}, run {r['run']}", tiles, r["whole"]["makespan"],
                             run["makespan"], run["speedup"], diff["max_abs"], diff["mean_abs"],
                             diff["psnr_db"]])  # fmt: skip
        for split in tried:
            rows.append([f"{label}: median", split, summary["median_whole_seconds"],
                         summary[f"median_seconds_{split}"], summary[f"median_speedup_{split}"],
                         summary[f"max_abs_{split}"], None, None])  # fmt: skip
    table(
        f"one 640x480 still: 1 node whole against {NODES} nodes in tiles or sample parts",
        ["part, run", "split", "1 node s", f"{NODES} nodes s", "speed-up", "max abs",
         "mean abs", "PSNR dB"],
        rows,
    )  # fmt: skip
    figures["duration_seconds"] = clock.elapsed()
    write_results("still", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
