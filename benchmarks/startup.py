"""Start-up paid per batch: one node, 24 frames of scenes/demo.blend, `batch_size` 1, four ways.

- farm, binary engine: orchestrator + one `render-node --blender /usr/bin/blender` (Blender
  3.4), which starts Blender for every batch: 24 start-ups;
- farm, bpy engine: the same with `render-node --blender bpy` (Blender 5.0 as a module), whose
  slot keeps one worker with the scene loaded across the job's batches: one start-up;
- bare bpy: one plain Python process (the venv's) that imports bpy, opens the scene
  (use_scripts=False) and renders the frames (`scene.frame_set(n)`, `render.filepath`,
  `bpy.ops.render.render(write_still=True)`): from spawning it to its last frame written;
- bare binary: `blender -b demo.blend -o DIR/frame_##### -F PNG -t T -s 1 -e 24 -a`, spawn
  to exit (what benchmarks.overhead calls bare).

Same threads everywhere (`--threads`, default the machine's cores). A farm is up (orchestrator
and node started, fresh data folders) before its clock starts, as in benchmarks.overhead: the
clock runs from before the scene upload (POST /scenes) to the job's `finished` time, set when
the last frame is collected; upload, scene push, dispatch, Blender's starts, polls and frame
collection are inside. The client polls only every 0.25 s. Each node batch's start-up (from
getting its slot to its first frame starting) and whether its worker was warm come from the
node's own log (benchmarks/nodelog.py).

Runs alternate the four ways; the figures are medians, and the ratios farm / bare are taken in
each run (same minute, same neighbours) and then their median. Targets: warm farm / bare bpy
<= 1.10. The two engines are different Blender versions (5.0, 3.4): compare each farm with its
own bare run, not the engines with each other.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import ROOT, Stopwatch, console, median, table, write_results
from benchmarks.nodelog import node_jobs
from benchmarks.overhead import bare_run as bare_binary_run
from benchmarks.procs import clean_env, proc_farm, upload, wait_final

SCENE = ROOT / "scenes" / "demo.blend"
TARGET_WARM_RATIO = 1.10

# The bare bpy render, run as `PYTHON -c BARE_BPY SCENE OUT_DIR FIRST LAST THREADS`; prints the
# wall time its last frame was written.
BARE_BPY = """
import sys, time
import bpy
scene_path, out, first, last, threads = sys.argv[1:6]
bpy.ops.wm.open_mainfile(filepath=scene_path, load_ui=False, use_scripts=False)
scene = bpy.context.scene
threads = int(threads)
scene.render.threads_mode = "FIXED" if threads else "AUTO"
if threads:
    scene.render.threads = threads
for frame in range(int(first), int(last) + 1):
    scene.frame_set(frame)
    scene.render.filepath = f"{out}/frame_{frame:05d}"
    bpy.ops.render.render(write_still=True)
print("last-frame-written", repr(time.time()), flush=True)
"""


def bpy_python(engine: str) -> str:
    """The Python an engine spec (`bpy`, `bpy:PYTHON`) runs: the bare run uses the same."""
    if engine == "bpy":
        return sys.executable
    if engine.startswith("bpy:"):
        return engine[4:]
    raise ValueError(f"{engine!r} is not a bpy engine (bpy or bpy:PYTHON)")


def bare_bpy_run(python: str, scene: Path, out: Path, threads: int, frames: int) -> dict[str, Any]:
    argv = [python, "-c", BARE_BPY, str(scene), str(out), "1", str(frames), str(threads)]
    start = time.time()
    done = subprocess.run(
        argv, capture_output=True, text=True, env=clean_env(), cwd=out, check=False, timeout=900
    )
    exited = time.time() - start
    written = [ln for ln in done.stdout.splitlines() if ln.startswith("last-frame-written ")]
    if done.returncode != 0 or not written:
        raise RuntimeError(f"bare bpy failed ({done.returncode}): {done.stderr[-2000:]}")
    made = len(list(out.glob("frame_*.png")))
    if made != frames:
        raise RuntimeError(f"bare bpy wrote {made} frames, not {frames}")
    return {"seconds": float(written[-1].split()[1]) - start, "seconds_to_exit": exited}


def farm_run(
    blender: str, scene: Path, root: Path, threads: int, frames: int, batch_size: int
) -> dict[str, Any]:
    """One fresh farm of one node, one job of `frames` frames in batches of `batch_size`."""
    scenes_dir = root / "scenes"
    scenes_dir.mkdir(parents=True)
    with proc_farm(root) as farm:
        farm.start_orchestrator(scenes_dir)
        node = farm.start_node(scenes_dir, blender=blender, threads=threads, job_log=True)
        with httpx.Client(base_url=farm.url, timeout=30) as client:
            farm.wait_nodes(client, 1)
            info = httpx.get(node.url + "/info", timeout=10).json()
            start = time.time()
            sha = upload(client, scene)
            resp = client.post(
                "/render", json={"scene": sha, "frames": f"1-{frames}", "batch_size": batch_size}
            )
            if resp.status_code != 202:
                raise RuntimeError(f"POST /render: {resp.status_code} {resp.text}")
            status = wait_final(client, resp.json()["id"], timeout=900, every=0.25)
        jobs = node_jobs(node.output())
    if status["state"] != "completed" or status["frames"]["done"] != frames:
        raise RuntimeError(f"farm job ended {status['state']}: {status.get('error')}")
    if len(jobs) != len(status["batches"]):
        raise RuntimeError(
            f"the node's log names {len(jobs)} jobs for {len(status['batches'])} batches: "
            "has its wording changed? (benchmarks/nodelog.py)"
        )
    ordered = sorted(jobs.values(), key=lambda j: j.running or 0.0)
    startups = [j.startup_seconds for j in ordered if j.startup_seconds is not None]
    cold = [j.startup_seconds for j in ordered if not j.warm and j.startup_seconds is not None]
    warm = [j.startup_seconds for j in ordered if j.warm and j.startup_seconds is not None]
    return {
        "seconds": status["finished"] - start,
        "engine": info.get("engine"),
        "blender_version": info.get("blender_version"),
        "batches": len(status["batches"]),
        "warm_batches": sum(j.warm for j in ordered),
        "blender_starts": sum(j.launches for j in ordered),
        "startup_seconds_total": sum(startups),
        "startup_seconds_cold": cold,
        "startup_seconds_warm_median": median(warm) if warm else None,
        "render_seconds_total": sum(j.render_seconds for j in ordered),
        "warm_by_batch": [j.warm for j in ordered],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.startup", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--frames", type=int, default=24, help="frames 1..N of the scene")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--blender", default="/usr/bin/blender", help="the binary engine")
    p.add_argument("--bpy", default="bpy", help="the warm engine: bpy or bpy:PYTHON")
    p.add_argument("--scene", type=Path, default=SCENE)
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    clock = Stopwatch()

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
        for i in range(args.runs):
            base = Path(tmp) / f"run{i}"
            for name in ("bare_binary", "bare_bpy"):
                (base / name).mkdir(parents=True)
            run: dict[str, Any] = {"run": i + 1}
            # The order turns each run, so no way always comes first (or after the same one).
            ways = ["bare_binary", "farm_binary", "bare_bpy", "farm_bpy"]
            ways = ways[i % 4 :] + ways[: i % 4]
            for way in ways:
                if way == "bare_binary":
                    run[way] = bare_binary_run(
                        args.blender, args.scene, base / way, args.threads, 1, args.frames
                    )
                elif way == "bare_bpy":
                    bare = bare_bpy_run(
                        bpy_python(args.bpy), args.scene, base / way, args.threads, args.frames
                    )
                    run[way], run["bare_bpy_to_exit"] = bare["seconds"], bare["seconds_to_exit"]
                else:
                    engine = args.blender if way == "farm_binary" else args.bpy
                    farm = farm_run(engine, args.scene, base / way, args.threads, args.frames,
                                    args.batch_size)  # fmt: skip
                    run[way] = farm.pop("seconds")
                    run[f"{way}_detail"] = farm
            run["ratio_warm_farm_to_bare_bpy"] = run["farm_bpy"] / run["bare_bpy"]
            run["ratio_binary_farm_to_bare_binary"] = run["farm_binary"] / run["bare_binary"]
            run["order"] = ways
            shown = {k: v for k, v in run.items() if not k.endswith("_detail")}
            console.print(f"run {i + 1}: " + json.dumps(shown, default=str))
            runs.append(run)

    def med(key: str) -> float:
        return median([r[key] for r in runs])

    def med_detail(way: str, key: str) -> float:
        return median([r[f"{way}_detail"][key] for r in runs])

    binary, warm = runs[0]["farm_binary_detail"], runs[0]["farm_bpy_detail"]
    figures: dict[str, Any] = {
        "frames": args.frames,
        "batch_size": args.batch_size,
        "threads": args.threads,
        "scene": str(args.scene),
        "binary_engine": args.blender,
        "binary_version": binary["blender_version"],
        "bpy_engine": args.bpy,
        "bpy_version": warm["blender_version"],
        "runs": runs,
        "median_seconds": {
            k: med(k) for k in ("bare_binary", "farm_binary", "bare_bpy", "farm_bpy")
        },
        "median_in_run_ratio_warm_farm_to_bare_bpy": med("ratio_warm_farm_to_bare_bpy"),
        "median_in_run_ratio_binary_farm_to_bare_binary": med("ratio_binary_farm_to_bare_binary"),
        "ratio_of_medians_warm_farm_to_bare_bpy": med("farm_bpy") / med("bare_bpy"),
        "ratio_of_medians_binary_farm_to_bare_binary": med("farm_binary") / med("bare_binary"),
        "median_startup_seconds_total": {
            "farm_binary": med_detail("farm_binary", "startup_seconds_total"),
            "farm_bpy": med_detail("farm_bpy", "startup_seconds_total"),
        },
        "target_warm_ratio": TARGET_WARM_RATIO,
    }
    figures["target_met"] = (
        figures["median_in_run_ratio_warm_farm_to_bare_bpy"] <= TARGET_WARM_RATIO
    )

    def starts(way: str) -> str:
        return "/".join(str(r[f"{way}_detail"]["blender_starts"]) for r in runs)

    def warm_batches(way: str) -> str:
        return "/".join(
            f"{r[f'{way}_detail']['warm_batches']} of {r[f'{way}_detail']['batches']}" for r in runs
        )

    n = args.frames
    table(
        f"start-up per batch: {n} frames of {args.scene.name}, batch_size={args.batch_size}, "
        f"-t {args.threads}, medians of {args.runs} alternated runs",
        ["way", "median s", "ratio of medians", "median in-run ratio", "Blender starts (per run)",
         "warm batches (per run)", "start-ups s (median)"],
        [
            [f"bare blender -a ({figures['binary_version']})", med("bare_binary"), 1.0, 1.0,
             "1", "-", None],
            ["farm, binary engine", med("farm_binary"),
             figures["ratio_of_medians_binary_farm_to_bare_binary"],
             figures["median_in_run_ratio_binary_farm_to_bare_binary"], starts("farm_binary"),
             warm_batches("farm_binary"), figures["median_startup_seconds_total"]["farm_binary"]],
            [f"bare bpy, one process ({figures['bpy_version']})", med("bare_bpy"), 1.0, 1.0,
             "1", "-", None],
            ["farm, bpy engine (warm slot)", med("farm_bpy"),
             figures["ratio_of_medians_warm_farm_to_bare_bpy"],
             figures["median_in_run_ratio_warm_farm_to_bare_bpy"], starts("farm_bpy"),
             warm_batches("farm_bpy"), figures["median_startup_seconds_total"]["farm_bpy"]],
        ],
    )  # fmt: skip
    figures["duration_seconds"] = clock.elapsed()
    write_results("startup", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
