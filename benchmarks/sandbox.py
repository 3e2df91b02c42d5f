"""What containing Blender costs a batch: one frame of scenes/demo.blend rendered by the real
Blender as the node runs it, three ways, alternated run by run so that drift in the machine's
speed falls on all three alike:

- plain: the node's command line without the scene guard (as before issue 16);
- guard: with the scene guard's `--python-expr`;
- guard + bwrap: that command inside the bubblewrap sandbox (`--sandbox bwrap`).

    python -m benchmarks.sandbox --runs 7

The figure is each run's wall time, Blender's start-up and scene load included, since the
sandbox and the guard cost once per Blender process.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.common import console, median, table, write_results
from farm_common.protocol import image_format
from render_node.blender import build_command
from render_node.sandbox import Sandbox, probe_bwrap

DEMO = Path(__file__).resolve().parents[1] / "scenes" / "demo.blend"


def commands(blender: str, work: Path) -> dict[str, list[str]]:
    out, passes = work / "out", work / "passes"
    out.mkdir()
    passes.mkdir()

    def node_command(guard: bool) -> list[str]:
        return build_command(
            blender, DEMO, out, [1], image_format("PNG"), 0, guard_dir=passes if guard else None
        )

    found, why = probe_bwrap("bwrap")
    variants = {"plain": node_command(False), "guard": node_command(True)}
    if found is None:
        console.print(f"[yellow]no bwrap run: {why}[/]")
        return variants
    sandbox = Sandbox("bwrap", bwrap=found, hide=(work / "hidden",))
    (work / "hidden").mkdir()
    variants["guard + bwrap"] = sandbox.command(node_command(True), read=[], write=[out, passes])
    return variants


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sandbox", description=__doc__)
    p.add_argument("--runs", type=int, default=7, help="runs of each variant (default 7)")
    p.add_argument("--blender", default=shutil.which("blender") or "blender")
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="farm-bench-sandbox-") as tmp:
        variants = commands(args.blender, Path(tmp))
        for command in variants.values():  # warm the page cache, unmeasured
            timed(command)
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.runs):
            for name, command in variants.items():
                seconds[name].append(timed(command))
    base = median(seconds["plain"])
    rows = [
        (name, f"{min(s):.3f}", f"{median(s):.3f}", f"{max(s):.3f}", f"{median(s) / base:.3f}")
        for name, s in seconds.items()
    ]
    table(
        f"one frame of demo.blend, {args.runs} runs each, wall seconds",
        ["variant", "min", "median", "max", "median / plain"],
        rows,
    )
    path = write_results(
        "sandbox",
        {name: {"median_s": median(s), "runs_s": s} for name, s in seconds.items()},
        args.results_dir,
    )
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
