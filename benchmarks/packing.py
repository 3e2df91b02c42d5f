"""What sending a real shot costs: scenes/shot (a linked library with its own texture, textures,
an image sequence, an Alembic cache) packed as `farm render` packs it, and sent to a real
orchestrator on loopback, three ways in a row:

- first: the farm holds none of it;
- again: the same shot, unchanged;
- one texture changed: tex/checker.png flipped.

    python -m benchmarks.packing --runs 5

Bytes sent are exact; seconds are medians over the runs (pack = trace + pack + hash with
blender-asset-tracer; send = POST /files/missing + the PUTs). Each run starts from a fresh
orchestrator, so "first" is always a cold farm.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.common import console, median, table, write_results
from benchmarks.procs import proc_farm
from farm_pack.pack import hash_files, pack_shot
from farm_pack.ship import plan_upload
from farm_pack.ship import send as send_files
from orchestrator.client.api import FarmClient

SHOT = Path(__file__).resolve().parents[1] / "scenes" / "shot"
MAIN = "shots/010/shot.blend"
STEPS = ("first", "again", "one texture changed")


def send(client: FarmClient, blend: Path) -> dict[str, Any]:
    start = time.perf_counter()
    with pack_shot(blend) as pack:
        hash_files(pack)
        packed = time.perf_counter()
        upload = plan_upload(client, pack)
        send_files(client, upload)
        done = time.perf_counter()
        return {
            "files": len(pack.files),
            "bytes": pack.total_bytes,
            "files_sent": len(upload.files),
            "bytes_sent": upload.bytes,
            "pack_s": packed - start,
            "send_s": done - packed,
        }


def flip(png: Path) -> None:
    """An artist's edit: the texture mirrored, saved again (a new sha256)."""
    with Image.open(png) as image:
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(png)


def one_run(root: Path) -> dict[str, dict[str, Any]]:
    project = root / "shot"
    shutil.copytree(SHOT, project)
    figures: dict[str, dict[str, Any]] = {}
    with proc_farm(root / "farm") as farm:
        farm.start_orchestrator(root / "scenes")
        with FarmClient(farm.url) as client:
            figures["first"] = send(client, project / MAIN)
            figures["again"] = send(client, project / MAIN)
            flip(project / "tex" / "checker.png")
            figures["one texture changed"] = send(client, project / MAIN)
    return figures


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.packing", description=__doc__)
    p.add_argument("--runs", type=int, default=5, help="runs (default 5)")
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    runs = []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="farm-bench-packing-") as tmp:
            (Path(tmp) / "scenes").mkdir()
            runs.append(one_run(Path(tmp)))
    rows = []
    result: dict[str, Any] = {}
    for step in STEPS:
        first = runs[0][step]
        pack_s = median([r[step]["pack_s"] for r in runs])
        send_s = median([r[step]["send_s"] for r in runs])
        result[step] = {**first, "pack_s": pack_s, "send_s": send_s}
        rows.append(
            (
                step,
                f"{first['files']} / {first['bytes']:,}",
                f"{first['files_sent']} / {first['bytes_sent']:,}",
                f"{pack_s:.3f}",
                f"{send_s:.3f}",
            )
        )
    table(
        f"scenes/shot sent to a loopback orchestrator, medians of {args.runs} runs",
        ["step", "files / bytes", "sent: files / bytes", "pack s", "send s"],
        rows,
    )
    path = write_results("packing", {"runs": args.runs, **result}, args.results_dir)
    console.print(f"results: {path}")


if __name__ == "__main__":
    main()
