"""Node loss: the scheduling run with one fast node SIGKILLed at 30 % progress.

The node process and everything under it (its fake Blender) get SIGKILL the moment
GET /render/{id} shows 30 % of the frames collected, like a machine that lost power. Runs
alternate with the same run without a kill; extra time = makespan with kill - without.

Target: extra time < the lost node's unfinished batch (the time a fresh Blender run needs for
the frames of its in-flight batch that were not collected: start-up + frames x 0.2 s) + 10 s.
What the extra time is made of: loss detection (no heartbeat for 6 s), the re-render of the
lost frames, and the lost node's share of the work done by two nodes instead of three.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import console, median, table, write_results
from benchmarks.procs import ProcFarm
from benchmarks.scheduling import FRAMES, Setup, run_job
from farm_common.frames import parse_frame_spec


class Killer:
    def __init__(self, at: float, total: int, victim: int = 0) -> None:
        self.at = at
        self.total = total
        self.victim = victim
        self.killed_at: float | None = None
        self.done_at_kill = 0

    def __call__(self, farm: ProcFarm, status: dict[str, Any], start: float) -> None:
        if self.killed_at is None and status["frames"]["done"] >= self.at * self.total:
            farm.kill_node(self.victim)
            self.killed_at = time.time() - start
            self.done_at_kill = status["frames"]["done"]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.node_loss", description=__doc__)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--frames", type=int, default=FRAMES)
    p.add_argument("--at", type=float, default=0.3, help="progress at which the node dies")
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    setup = Setup(frames=args.frames)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-loss-") as tmp:
        for i in range(args.runs):
            base = run_job(Path(tmp) / f"base{i}", setup)
            killer = Killer(args.at, setup.frames)
            hit = run_job(Path(tmp) / f"kill{i}", setup, during=killer)
            victim = hit["urls"][killer.victim]
            lost = [b for b in hit["status"]["batches"] if b["node"] == victim and b["state"] in (
                "lost", "failed")]  # fmt: skip
            unfinished = 0
            for b in lost:
                unfinished += len(parse_frame_spec(b["frames"])) - b["done"]
            unfinished_time = (setup.startup + unfinished * setup.speeds[killer.victim]
                               if unfinished else 0.0)  # fmt: skip
            run = {
                "run": i + 1,
                "makespan_without_kill": base["makespan"],
                "makespan_with_kill": hit["makespan"],
                "extra_seconds": hit["makespan"] - base["makespan"],
                "killed_at_seconds": killer.killed_at,
                "frames_done_at_kill": killer.done_at_kill,
                "lost_batches": [{k: b[k] for k in ("frames", "state", "done")} for b in lost],
                "unfinished_frames_of_lost_batch": unfinished,
                "unfinished_batch_seconds": unfinished_time,
                "budget_seconds": unfinished_time + 10,
                "frames_done": hit["frames_done"],
                "frames_rendered_twice": hit["frames_rendered_twice"],
                "collected_per_node": hit["collected_per_node"],
            }
            console.print(f"run {i + 1}: {run}")
            runs.append(run)

    extra = median([r["extra_seconds"] for r in runs])
    budget = median([r["budget_seconds"] for r in runs])
    figures: dict[str, Any] = {
        **setup.describe(),
        "kill_at_progress": args.at,
        "runs": runs,
        "median_makespan_without_kill": median([r["makespan_without_kill"] for r in runs]),
        "median_makespan_with_kill": median([r["makespan_with_kill"] for r in runs]),
        "median_extra_seconds": extra,
        "median_budget_seconds": budget,
        "all_frames_collected": all(r["frames_done"] == setup.frames for r in runs),
    }
    table(
        f"node loss: fast node SIGKILLed at {args.at:.0%} of {setup.frames} frames; "
        f"{len(runs)} alternated pairs",
        ["run", "without kill s", "with kill s", "extra s", "unfinished frames",
         "budget (batch + 10) s", "met"],
        [[r["run"], r["makespan_without_kill"], r["makespan_with_kill"], r["extra_seconds"],
          r["unfinished_frames_of_lost_batch"], r["budget_seconds"],
          "yes" if r["extra_seconds"] < r["budget_seconds"] else "NO"] for r in runs]
        + [["median", figures["median_makespan_without_kill"],
            figures["median_makespan_with_kill"], extra, "-", budget,
            "yes" if extra < budget else "NO"]],
    )  # fmt: skip
    figures["target_met"] = extra < budget
    write_results("node_loss", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
