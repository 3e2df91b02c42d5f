"""Scale of the orchestrator: one orchestrator process, 100 fake nodes, a 100,000-frame job.

Processes: the real `orchestrator` CLI (defaults, nodes given as static `--node` URLs through
FARM_NODE); the fake nodes (tests/fake_node.py) all in one other process
(`python -m benchmarks.fakefarm`), 2 slots each, 1 ms a frame; this process as the client.

Measured, from the start of POST /render to the job's end:
- orchestrator CPU seconds (utime + stime of its process, /proc/<pid>/stat) per 1,000 frames;
  the fake farm's CPU likewise, and both as a share of one core, to show which is saturated;
- peak RSS of the orchestrator (VmHWM from /proc/<pid>/status);
- GET /render/{id} latency p50/p99/max, sampled every 0.1 s by a thread while the job runs;
- dispatch as the nodes see it (the fake farm notes when each node receives each batch):
  batches/s over the whole job, the opening burst (one batch for every slot at once, scene
  pushes included) and the requests the nodes received up to its end, by kind, the busiest
  1-s window, and the re-dispatch gap between a batch settling on the orchestrator (SQLite
  `batches.finished`) and its node receiving the next (p50/p99).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import (
    cpu_seconds,
    descendants,
    median,
    percentile,
    table,
    tree_cpu_seconds,
    tree_peak_rss_mb,
    write_results,
)
from benchmarks.procs import FINAL, clean_env, submit, upload_scene
from tests.orch_helpers import BLEND
from tests.servers import CliServer, free_port, run_cli


@dataclass
class Sampler:
    """GET /render/{id} every `every` seconds on its own connection, recording latencies:
    until the whole answer is received, and (`decoded`, what rounds up to the fourth
    measured) until the client has also parsed its JSON."""

    url: str
    job_id: str
    every: float = 0.1
    latencies: list[float] = field(default_factory=list)
    decoded: list[float] = field(default_factory=list)
    last: dict[str, Any] = field(default_factory=dict)
    errors: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    resp = client.get(f"/render/{self.job_id}")  # reads the whole body
                    self.latencies.append(time.perf_counter() - t0)
                    resp.raise_for_status()
                    self.last = resp.json()
                    self.decoded.append(time.perf_counter() - t0)
                except httpx.HTTPError:
                    self.errors += 1
                    continue
                if self.last.get("state") in FINAL:
                    return
                self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()


@dataclass
class CpuTrace:
    """CPU seconds of each process every `every` seconds, for the first `seconds` of a job:
    which one is saturated during the opening burst (/proc counts in 10-ms ticks)."""

    pids: dict[str, int]
    every: float = 0.01
    seconds: float = 15.0
    rows: list[tuple[float, dict[str, float]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        end = time.time() + self.seconds
        while not self._stop.is_set() and time.time() < end:
            with contextlib.suppress(OSError):
                self.rows.append((time.time(), {k: cpu_seconds(p) for k, p in self.pids.items()}))
            self._stop.wait(self.every)

    def stop(self) -> None:
        self._stop.set()

    def shares(self, start: float, end: float) -> dict[str, float]:
        """Each process's share of a core between `start` and `end` (the nearest samples
        outside the window; empty when the trace does not cover it)."""
        before = [r for r in self.rows if r[0] <= start]
        after = [r for r in self.rows if r[0] >= end]
        if not before or not after:
            return {}
        (t0, c0), (t1, c1) = before[-1], after[0]
        return {k: round((c1[k] - c0[k]) / (t1 - t0), 2) for k in self.pids if t1 > t0}


@contextlib.contextmanager
def scale_farm(
    root: Path, nodes: int, slots: int, seconds: float, single_process: bool = False
) -> Iterator[tuple[CliServer, CliServer]]:
    scenes = root / "scenes"
    scenes.mkdir(parents=True)
    (scenes / "demo.blend").write_bytes(BLEND)
    fake_port = free_port()
    fake_argv = [
        sys.executable, "-m", "benchmarks.fakefarm", "--port", str(fake_port),
        "--nodes", str(nodes), "--slots", str(slots), "--seconds", str(seconds),
    ]  # fmt: skip
    base = f"http://127.0.0.1:{fake_port}"
    urls = ",".join(f"{base}/n/{i}" for i in range(nodes))
    orch_port = free_port()
    orch_argv = [
        sys.executable, "-m", "orchestrator", "--port", str(orch_port),
        "--data-dir", str(root / "orch"), "--scenes-dir", str(scenes), "--log-level", "warning",
    ]  # fmt: skip
    if single_process:
        orch_argv.append("--single-process")
    cwd = Path(__file__).resolve().parents[1]
    with (
        run_cli(fake_argv, port=fake_port, env=clean_env(), cwd=cwd, health_path="/n/0/health",
                startup_timeout=60) as fake,
        run_cli(orch_argv, port=orch_port, env=clean_env({"FARM_NODE": urls}), cwd=root,
                startup_timeout=60) as orch,
    ):  # fmt: skip
        yield orch, fake


def dispatch_figures(
    submits: list[tuple[float, int]], db_path: Path, nodes: int, slots: int
) -> dict[str, Any]:
    """Dispatch as the nodes saw it (`submits`: when node i received a batch) against when the
    orchestrator settled each batch (its SQLite `batches.finished`)."""
    starts = sorted(t for t, _ in submits)
    n = len(starts)
    span = starts[-1] - starts[0] if n > 1 else 0.0
    burst_n = min(n, nodes * slots)
    burst_span = starts[burst_n - 1] - starts[0] if burst_n > 1 else 0.0
    peak = 0
    j = 0
    for i in range(n):
        while starts[i] - starts[j] >= 1.0:
            j += 1
        peak = max(peak, i - j + 1)
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    rows = db.execute("SELECT node, started, finished FROM batches WHERE finished IS NOT NULL")
    settled: dict[int, list[float]] = defaultdict(list)
    busy = 0.0
    for node, started, finished in rows:
        settled[int(node.rsplit("/", 1)[1])].append(finished)
        busy += finished - started
    db.close()
    # A slot freed when its batch settled; the gap is until that node got its next batch.
    gaps: list[float] = []
    received: dict[int, list[float]] = defaultdict(list)
    for t, i in submits:
        received[i].append(t)
    for i, times in received.items():
        ends = sorted(settled[i])
        for t in sorted(times)[slots:]:
            before = [e for e in ends if e <= t]
            if before:
                gaps.append(t - before[-1])
    last = max((e for ends in settled.values() for e in ends), default=0.0)
    return {
        "batches": n,
        "batches_per_second_mean": n / span if span else float("nan"),
        "burst_batches": burst_n,
        "burst_batches_per_second": (burst_n - 1) / burst_span if burst_span else float("nan"),
        "peak_batches_in_1s": peak,
        "redispatch_gap_p50_ms": percentile(gaps, 50) * 1000,
        "redispatch_gap_p99_ms": percentile(gaps, 99) * 1000,
        "slot_busy_share": busy / (nodes * slots * (last - starts[0]))
        if n and last > starts[0]
        else float("nan"),
    }


def requests_by_kind(requests: list[list[Any]], start: float, end: float) -> dict[str, int]:
    """What the nodes were asked between `start` and `end`, by kind ("POST jobs", "HEAD
    scenes"...)."""
    kinds: dict[str, int] = defaultdict(int)
    for t, _, method, what in requests:
        if start <= t <= end:
            kinds[f"{method} {what}"] += 1
    return dict(sorted(kinds.items()))


def burst_requests(
    requests: list[list[Any]], start: float, submits: list[tuple[float, int]], burst_n: int
) -> dict[str, int]:
    """What the nodes were asked from the submit to the burst's last batch, by kind."""
    starts = sorted(t for t, _ in submits)
    if not starts:
        return {}
    return requests_by_kind(requests, start, starts[min(burst_n, len(starts)) - 1])


def scale_run(
    root: Path, *, frames: int, nodes: int, slots: int = 2, seconds: float = 0.001,
    timeout: float = 1800, batch_size: int | None = None, single_process: bool = False,
) -> dict[str, Any]:  # fmt: skip
    with scale_farm(root, nodes, slots, seconds, single_process) as (orch, fake):
        with httpx.Client(base_url=orch.url, timeout=30) as client:
            deadline = time.monotonic() + 60
            while sum(n["state"] != "lost" for n in client.get("/nodes").json()) < nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError("fake nodes not all live after 60 s")
                time.sleep(0.2)
            orch_pid, fake_pid = orch.process.pid, fake.process.pid
            engine = descendants(orch_pid)  # the scheduler's process (none: --single-process)
            trace = CpuTrace(
                {"api": orch_pid, "fakefarm": fake_pid, "benchmark": os.getpid()}
                | ({"scheduler": engine[0]} if engine else {})
            )
            tracer = threading.Thread(target=trace.run, daemon=True)
            tracer.start()
            orch_cpu0, fake_cpu0 = tree_cpu_seconds(orch_pid), cpu_seconds(fake_pid)
            api_cpu0 = cpu_seconds(orch_pid)
            rss_before = tree_peak_rss_mb(orch_pid)
            # Uploaded, as a user's .blend: the burst holds its push to each node.
            scene = upload_scene(client, BLEND)
            start = time.time()
            extra = {"batch_size": batch_size} if batch_size else {}
            job = submit(client, scene, f"1-{frames}", **extra)
            submit_ms = (time.time() - start) * 1000
            sampler = Sampler(orch.url, job["id"])
            thread = threading.Thread(target=sampler.run, daemon=True)
            thread.start()
            thread.join(timeout)
            sampler.stop()
            trace.stop()
            thread.join(5)
            wall = time.time() - start
            status = client.get(f"/render/{job['id']}").json()
            orch_cpu = tree_cpu_seconds(orch_pid) - orch_cpu0
            api_cpu = cpu_seconds(orch_pid) - api_cpu0
            fake_cpu = cpu_seconds(fake_pid) - fake_cpu0
            rss = tree_peak_rss_mb(orch_pid)
            stats = httpx.get(f"{fake.url}/stats", timeout=30).json()
            submits = [(t, i) for t, i in stats["submits"]]
        db_path = root / "orch" / "farm.sqlite3"
        dispatch = dispatch_figures(submits, db_path, nodes, slots)
        dispatch["burst_requests"] = burst_requests(
            stats["requests"], start, submits, nodes * slots
        )
        # Who was busy while the burst went out: a process near 1.0 is what held it back.
        firsts = sorted(t for t, _ in submits)[: nodes * slots]
        dispatch["burst_core_shares"] = trace.shares(firsts[0], firsts[-1]) if firsts else {}
        # Over the whole job, per batch: what a batch costs in requests, probes included.
        asked = requests_by_kind(stats["requests"], start, status.get("finished") or time.time())
        dispatch["requests_per_batch"] = {
            kind: round(count / max(1, dispatch["batches"]), 2) for kind, count in asked.items()
        }
    if status["state"] != "completed":
        raise RuntimeError(f"job ended {status['state']} ({status['frames']})")
    makespan = status["finished"] - start
    lat = sampler.latencies
    return {
        "frames": frames,
        "nodes": nodes,
        "slots_per_node": slots,
        "seconds_per_frame": seconds,
        "batch_size": job["batch_size"],
        "fixed_batch_size": batch_size,
        "single_process": single_process,
        "frames_done": status["frames"]["done"],
        "submit_ms": submit_ms,
        "makespan_seconds": makespan,
        "frames_per_second": frames / makespan,
        "orchestrator_cpu_seconds": orch_cpu,
        "orchestrator_cpu_per_1000_frames": orch_cpu / frames * 1000,
        "orchestrator_core_share": orch_cpu / wall,
        # The API's process alone; the rest is the scheduler's (one process with
        # --single-process, then this is all of it).
        "api_process_core_share": api_cpu / wall,
        "fakefarm_cpu_seconds": fake_cpu,
        "fakefarm_core_share": fake_cpu / wall,
        "peak_rss_mb": rss,
        "rss_before_job_mb": rss_before,
        "status_samples": len(lat),
        "status_errors": sampler.errors,
        "status_p50_ms": percentile(lat, 50) * 1000,
        "status_p99_ms": percentile(lat, 99) * 1000,
        "status_max_ms": max(lat) * 1000 if lat else float("nan"),
        "status_median_ms": median(lat) * 1000,
        # As measured up to the fourth round: the client's JSON decoding of the answer included.
        "status_decoded_p50_ms": percentile(sampler.decoded, 50) * 1000,
        "status_decoded_p99_ms": percentile(sampler.decoded, 99) * 1000,
        **dispatch,
    }


ROWS = [
    ("frames", "frames"),
    ("nodes x slots", None),
    ("batch size", "batch_size"),
    ("makespan s", "makespan_seconds"),
    ("frames/s", "frames_per_second"),
    ("batches dispatched/s (mean)", "batches_per_second_mean"),
    ("opening burst batches/s", "burst_batches_per_second"),
    ("requests to the nodes up to the burst's end", "burst_requests"),
    ("share of a core during the burst", "burst_core_shares"),
    ("requests to the nodes per batch, whole job", "requests_per_batch"),
    ("busiest 1-s window (batches)", "peak_batches_in_1s"),
    ("re-dispatch gap p50 ms", "redispatch_gap_p50_ms"),
    ("re-dispatch gap p99 ms", "redispatch_gap_p99_ms"),
    ("orchestrator CPU s / 1000 frames", "orchestrator_cpu_per_1000_frames"),
    ("orchestrator share of a core", "orchestrator_core_share"),
    ("... its API process alone", "api_process_core_share"),
    ("fake farm share of a core", "fakefarm_core_share"),
    ("peak RSS MB (VmHWM)", "peak_rss_mb"),
    ("GET /render/{id} p50 ms", "status_p50_ms"),
    ("GET /render/{id} p99 ms", "status_p99_ms"),
    ("GET /render/{id} max ms", "status_max_ms"),
    ("... p50 / p99 ms with the client's JSON decoding", None),
    ("status samples", "status_samples"),
]


def row_value(result: dict[str, Any], label: str, key: str | None) -> Any:
    if key is None and label.startswith("..."):
        return f"{result['status_decoded_p50_ms']:.1f} / {result['status_decoded_p99_ms']:.1f}"
    if key is None:
        return f"{result['nodes']} x {result['slots_per_node']}"
    value = result[key]
    if isinstance(value, dict):
        return ", ".join(f"{kind} {count}" for kind, count in value.items())
    return value


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    p.add_argument("--frames", type=int, default=100_000)
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--slots", type=int, default=2)
    p.add_argument("--seconds", type=float, default=0.001, help="fake seconds a frame")
    p.add_argument(
        "--batch-size", type=int, default=None,
        help="fixed batch size (default: none, batches cut to the nodes' speed); a small one "
        "makes the run a dispatch test",
    )  # fmt: skip
    p.add_argument(
        "--single-process", action="store_true",
        help="the orchestrator's scheduler on a thread of its API's process (as before the split)",
    )  # fmt: skip
    p.add_argument("--results-dir", type=Path, default=None)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        result = scale_run(
            Path(tmp), frames=args.frames, nodes=args.nodes, slots=args.slots,
            seconds=args.seconds, batch_size=args.batch_size, single_process=args.single_process,
        )  # fmt: skip
    table(
        f"scale: {args.frames} frames, {args.nodes} fake nodes in one process",
        ["measure", "value"],
        [[label, row_value(result, label, key)] for label, key in ROWS],
    )
    targets = {
        "status_p99_under_50ms": result["status_p99_ms"] < 50,
        "rss_under_500mb": result["peak_rss_mb"] < 500,
        "burst_dispatch_at_least_500_per_s": result["burst_batches_per_second"] >= 500,
    }
    write_results("scale", {"result": result, "targets": targets}, args.results_dir)
    return result


if __name__ == "__main__":
    main()
