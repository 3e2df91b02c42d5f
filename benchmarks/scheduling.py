"""Scheduling on unequal nodes: dynamic pull against the lower bound and a static equal split.

Three real `render-node` processes whose fake Blender takes 0.2, 0.2 and 0.8 s a frame plus
0.3 s start-up per Blender run, one real orchestrator, 120 frames, no batch size given.

Makespan: from POST /render to the job's `finished` time (orchestrator's wall clock, same
machine), i.e. dispatch, every fake-Blender start-up, polling and collection included.

Bounds (frames / sum of speeds = 120 / (5 + 5 + 1.25) = 10.67 s); the tighter one lets every
node pay one start-up: a node can render at most (M - 0.3) * speed frames by time M, so
M >= 120 / 11.25 + 0.3 = 10.97 s. Neither counts the fake Blender's own Python start-up
(~0.05-0.1 s a run) nor the node's HTTP round trips, so both are optimistic.

Static equal split (what a tutorial farm does): 40 contiguous frames per node; the slow node
decides: 0.3 + 40 * 0.8 = 32.3 s (computed). It is also *run*: batch_size=40 makes exactly
three batches, and three idle nodes each pull one at once, which is the static split (the
table shows which node got which batch to prove it).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import console, median, table, write_results
from benchmarks.procs import FAKE_BLENDER, FINAL, ProcFarm, proc_farm, submit
from tests.orch_helpers import BLEND

SPEEDS = (0.2, 0.2, 0.8)  # seconds a frame, per node
STARTUP = 0.3
FRAMES = 120


@dataclass
class Setup:
    speeds: tuple[float, ...] = SPEEDS
    startup: float = STARTUP
    frames: int = FRAMES

    @property
    def rate(self) -> float:
        return sum(1 / s for s in self.speeds)

    @property
    def bound(self) -> float:
        return self.frames / self.rate

    @property
    def bound_with_startup(self) -> float:
        return self.frames / self.rate + self.startup

    def describe(self) -> dict[str, Any]:
        """The setup as the results JSON records it."""
        return {
            "speeds_seconds_per_frame": list(self.speeds),
            "startup_seconds": self.startup,
            "frames": self.frames,
        }

    @property
    def static_split(self) -> float:
        share = -(-self.frames // len(self.speeds))
        return max(self.startup + share * s for s in self.speeds)


def run_job(
    root: Path,
    setup: Setup,
    *,
    batch_size: int | None = None,
    during: Callable[[ProcFarm, dict[str, Any], float], None] | None = None,
    warm: bool = False,
) -> dict[str, Any]:
    """One farm, one job; `during(farm, status, start)` is called on every status poll.

    `warm`: the same job is rendered once before the measured one, on the same farm, so the
    orchestrator knows every node's speed on the scene (as on a farm that rendered it before).
    """
    scenes = root / "scenes"
    scenes.mkdir(parents=True)
    (scenes / "demo.blend").write_bytes(BLEND)
    logs = [root / f"node{i}-rendered.log" for i in range(len(setup.speeds))]
    with proc_farm(root) as farm:
        farm.start_orchestrator(scenes)
        for speed, log in zip(setup.speeds, logs, strict=True):
            env = {
                "FAKE_BLENDER_SECONDS": str(speed),
                "FAKE_BLENDER_STARTUP": str(setup.startup),
                "FAKE_BLENDER_LOG": str(log),
            }
            farm.start_node(scenes, blender=str(FAKE_BLENDER), env=env)
        urls = [n.url for n in farm.nodes]
        with httpx.Client(base_url=farm.url, timeout=30) as client:
            farm.wait_nodes(client, len(setup.speeds))
            extra = {"batch_size": batch_size} if batch_size else {}
            for _ in range(2 if warm else 1):
                for log in logs:
                    log.unlink(missing_ok=True)
                start = time.time()
                job = submit(client, "demo.blend", f"1-{setup.frames}", **extra)
                deadline = time.monotonic() + 300
                while True:
                    status: dict[str, Any] = client.get(f"/render/{job['id']}").json()
                    if status["state"] in FINAL:
                        break
                    if during is not None:
                        during(farm, status, start)
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"job still {status['state']} after 300 s")
                    time.sleep(0.05)
    if status["state"] != "completed":
        raise RuntimeError(f"job ended {status['state']}: {status.get('error')}")
    rendered: Counter[int] = Counter()
    per_node: list[int] = []
    for log in logs:
        frames = [int(x) for x in log.read_text().split()] if log.exists() else []
        rendered.update(frames)
        per_node.append(len(frames))
    batches_by_node = Counter(urls.index(b["node"]) for b in status["batches"] if b["node"])
    return {
        "makespan": status["finished"] - start,
        "batch_size": job["batch_size"],
        "batches": len(status["batches"]),
        "batches_per_node": [batches_by_node.get(i, 0) for i in range(len(urls))],
        "collected_per_node": [status["nodes"].get(u, 0) for u in urls],
        "rendered_per_node": per_node,
        "frames_rendered_twice": sum(1 for c in rendered.values() if c > 1),
        "frames_done": status["frames"]["done"],
        "status": status,
        "urls": urls,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scheduling", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--static-runs", type=int, default=1, help="runs of the static split")
    p.add_argument(
        "--warm-runs", type=int, default=3,
        help="runs of the job on a farm that rendered it once before (node speeds known)",
    )  # fmt: skip
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    setup = Setup(frames=args.frames)
    share = -(-setup.frames // len(setup.speeds))

    # series name -> (number of runs, run_job options); runs of the series alternate
    series: dict[str, tuple[int, dict[str, Any]]] = {
        "dynamic": (args.runs, {}),
        "warm": (args.warm_runs, {"warm": True}),
        "static": (args.static_runs, {"batch_size": share}),
    }
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in series}
    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        for i in range(max(count for count, _ in series.values())):
            for name, (count, options) in series.items():
                if i < count:
                    r = run_job(Path(tmp) / f"{name}{i}", setup, **options)
                    r.pop("status")
                    results[name].append(r)
                    console.print(f"{name} run {i + 1}: {r}")
    dynamic, warm, static = results["dynamic"], results["warm"], results["static"]

    make = median([r["makespan"] for r in dynamic])
    figures: dict[str, Any] = {
        **setup.describe(),
        "lower_bound_seconds": setup.bound,
        "lower_bound_with_startup_seconds": setup.bound_with_startup,
        "static_split_computed_seconds": setup.static_split,
        "dynamic_runs": dynamic,
        "static_runs": static,
        "median_makespan_seconds": make,
        "efficiency": setup.bound / make,
        "efficiency_vs_startup_bound": setup.bound_with_startup / make,
        "target_efficiency": 0.9,
    }
    rows: list[list[Any]] = [
        ["lower bound: frames / sum of speeds", setup.bound, 1.0, "-", "-"],
        ["bound with one start-up per node", setup.bound_with_startup,
         setup.bound / setup.bound_with_startup, "-", "-"],
        [f"farm, first job (cold; first batch {dynamic[0]['batch_size']})", make,
         setup.bound / make, dynamic[0]["batches_per_node"], dynamic[0]["collected_per_node"]],
        [f"static split, computed (0.3 + {share} x 0.8)", setup.static_split,
         setup.bound / setup.static_split, "1/1/1", f"{share}/{share}/{share}"],
    ]  # fmt: skip
    if warm:
        wmake = median([r["makespan"] for r in warm])
        figures["warm_runs"] = warm
        figures["median_warm_makespan_seconds"] = wmake
        figures["warm_efficiency"] = setup.bound / wmake
        rows.insert(3, ["farm, job rendered before (warm: node speeds known)", wmake,
                        setup.bound / wmake, warm[0]["batches_per_node"],
                        warm[0]["collected_per_node"]])  # fmt: skip
    if static:
        smake = median([r["makespan"] for r in static])
        figures["median_static_run_seconds"] = smake
        rows.append([f"static split, run (batch_size={share})", smake, setup.bound / smake,
                     static[0]["batches_per_node"], static[0]["collected_per_node"]])  # fmt: skip
    table(
        f"scheduling: {setup.frames} frames on nodes of {setup.speeds} s/frame + "
        f"{setup.startup} s start-up; median of {len(dynamic)} (cold) / {len(warm)} (warm) runs",
        ["schedule", "makespan s", "efficiency (bound/makespan)", "batches/node", "frames/node"],
        rows,
    )
    figures["target_met"] = figures["efficiency"] >= 0.9
    figures["warm_target_met"] = figures.get("warm_efficiency", 0) >= 0.9
    write_results("scheduling", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
