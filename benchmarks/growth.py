"""How the orchestrator's cost grows: the scale run at 10k / 100k frames x 10 / 100 nodes.

Linear growth in frames shows as a constant CPU per 1,000 frames across the frame counts;
growth in nodes as CPU per 1,000 frames rising with the node count at equal frames. The table
gives the ratios (100k / 10k at each node count, 100 / 10 nodes at each frame count).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import console, table, write_results
from benchmarks.scale import scale_run

COLUMNS = [
    ("batch", "batch_size"),
    ("makespan s", "makespan_seconds"),
    ("frames/s", "frames_per_second"),
    ("orch CPU s/1k fr", "orchestrator_cpu_per_1000_frames"),
    ("orch core share", "orchestrator_core_share"),
    ("fake core share", "fakefarm_core_share"),
    ("RSS MB", "peak_rss_mb"),
    ("status p50 ms", "status_p50_ms"),
    ("status p99 ms", "status_p99_ms"),
    ("burst batches/s", "burst_batches_per_second"),
    ("gap p50 ms", "redispatch_gap_p50_ms"),
]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.growth", description=__doc__)
    p.add_argument("--frames", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--nodes", type=int, nargs="+", default=[10, 100])
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--seconds", type=float, default=0.001)
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)

    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-growth-") as tmp:
        for frames in args.frames:
            for nodes in args.nodes:
                r = scale_run(
                    Path(tmp) / f"f{frames}-n{nodes}", frames=frames, nodes=nodes,
                    slots=args.slots, seconds=args.seconds,
                )  # fmt: skip
                console.print(f"{frames} frames, {nodes} nodes: {r}")
                results.append(r)

    table(
        "growth: orchestrator cost by job size and farm size",
        ["frames x nodes", *(c for c, _ in COLUMNS)],
        [[f"{r['frames']} x {r['nodes']}", *(r[k] for _, k in COLUMNS)] for r in results],
    )
    ratios: list[dict[str, Any]] = []
    by = {(r["frames"], r["nodes"]): r for r in results}
    keys = ("orchestrator_cpu_per_1000_frames", "status_p50_ms", "peak_rss_mb", "makespan_seconds")
    if len(args.frames) > 1:
        lo, hi = min(args.frames), max(args.frames)
        for nodes in args.nodes:
            a, b = by[(lo, nodes)], by[(hi, nodes)]
            ratios.append({"change": f"frames {lo} -> {hi} ({hi / lo:g}x), {nodes} nodes",
                           **{k: b[k] / a[k] for k in keys}})  # fmt: skip
    if len(args.nodes) > 1:
        lo, hi = min(args.nodes), max(args.nodes)
        for frames in args.frames:
            a, b = by[(frames, lo)], by[(frames, hi)]
            ratios.append({"change": f"nodes {lo} -> {hi} ({hi / lo:g}x), {frames} frames",
                           **{k: b[k] / a[k] for k in keys}})  # fmt: skip
    table(
        "growth ratios (1.0 = cost per frame unchanged; makespan and RSS are totals)",
        ["change", "CPU/1k frames", "status p50", "peak RSS", "makespan"],
        [[r["change"], *(r[k] for k in keys)] for r in ratios],
    )
    figures = {"results": results, "ratios": ratios}
    write_results("growth", figures, args.results_dir)
    return figures


if __name__ == "__main__":
    main()
