"""What reading frames.tar costs the orchestrator per frame: TarReader over archives like the
fake node's (one small PNG per member, 500 members an archive), against another version of
orchestrator/nodes/archive.py given as a file, alternated in one process.

    git show bb3f0f6:orchestrator/nodes/archive.py > /tmp/archive_before.py
    python -m benchmarks.tar_reader --before /tmp/archive_before.py

Per header alone: tarfile.TarInfo.frombuf, and the other version's `read_header` if it has one.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tarfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any

from benchmarks.common import console, median, table, write_results
from farm_common.protocol import MAX_ARCHIVE_FRAMES, frame_name
from orchestrator.nodes import archive
from render_node.archive import END, padding, tar_header
from tests.fake_blender import png_bytes

SCALE_FRAMES = 100_000  # benchmarks/scale.py: one header per frame
FEED = 64 << 10  # what one network read tends to hand the reader


def fake_archive(frames: int) -> bytes:
    parts = []
    for f in range(1, frames + 1):
        image = png_bytes(8, 6, f)
        parts += [tar_header(frame_name(f, ".png"), len(image), 0), image, padding(len(image))]
    return b"".join([*parts, END])


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("archive_other", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def read_archive(module: Any, data: bytes) -> int:
    reader = module.TarReader()
    pieces = 0
    for i in range(0, len(data), FEED):
        pieces += len(reader.feed(data[i : i + FEED]))
    reader.close()
    return pieces


def per_call_us(fn: Callable[[], object], calls: int, number: int, repeat: int) -> list[float]:
    """Microseconds per unit of work (`calls` units per fn()), one figure per repeat."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        out.append((time.perf_counter() - start) / (number * calls) * 1e6)
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.tar_reader", description=__doc__)
    p.add_argument("--before", type=Path, default=None, help="another archive.py to compare")
    p.add_argument("--rounds", type=int, default=5, help="alternated rounds of each reader")
    p.add_argument("--number", type=int, default=20, help="archives read per round")
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)

    data = fake_archive(MAX_ARCHIVE_FRAMES)
    block = data[:512]
    readers: dict[str, Any] = {"current": archive}
    headers: dict[str, Callable[[], object]] = {
        "tarfile.TarInfo.frombuf": lambda: tarfile.TarInfo.frombuf(
            block, "utf-8", "surrogateescape"
        )
    }
    if args.before is not None:
        before = load(args.before)
        readers["before"] = before
        if hasattr(before, "read_header"):
            headers["before: read_header"] = lambda: before.read_header(block)
    for module in readers.values():
        assert read_archive(module, data) == MAX_ARCHIVE_FRAMES

    member_us: dict[str, list[float]] = {name: [] for name in readers}
    header_us: dict[str, list[float]] = {name: [] for name in headers}
    for _ in range(args.rounds):
        for name, module in readers.items():
            member_us[name] += per_call_us(
                partial(read_archive, module, data), MAX_ARCHIVE_FRAMES, args.number, 1
            )
        for name, fn in headers.items():
            header_us[name] += per_call_us(fn, 1, args.number * MAX_ARCHIVE_FRAMES, 1)

    rows = []
    figures: dict[str, Any] = {
        "members_per_archive": MAX_ARCHIVE_FRAMES,
        "scale_frames": SCALE_FRAMES,
    }
    for kind, runs in (("reader, per member", member_us), ("per header", header_us)):
        for name, values in runs.items():
            best, mid = min(values), median(values)
            # One header per frame: us per frame is ms per 1k frames; CPU s over the scale run.
            rows.append((f"{kind}: {name}", best, mid, mid / 1000, mid * SCALE_FRAMES / 1e6))
            figures[f"{kind}: {name}"] = {"us_min": best, "us_median": mid, "us_all": values}
    table(
        "frames.tar reading",
        ["what", "us min", "us median", "CPU s / 1k frames", f"CPU s / {SCALE_FRAMES:,} frames"],
        rows,
    )
    if "before" in member_us:
        extra = median(member_us["current"]) - median(member_us["before"])
        figures["extra_us_per_frame"] = extra
        console.print(f"current - before: {extra:.1f} us a frame, {extra / 1000:.4f} CPU s / 1k")
    write_results("tar_reader", figures, args.results_dir)


if __name__ == "__main__":
    main()
