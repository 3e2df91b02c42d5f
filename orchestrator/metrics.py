"""Prometheus metrics of one orchestrator, in its own registry (no module-level state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_rendered = Counter(
            "farm_frames_rendered", "Frames collected from nodes", registry=r
        )
        self.frames_failed = Counter(
            "farm_frames_failed", "Frames failed for good (3 nodes)", registry=r
        )
        self.frames_retried = Counter(
            "farm_frames_retried", "Frame failures sent back to the queue", registry=r
        )
        self.frame_seconds = Histogram(
            "farm_frame_seconds",
            "Render time per frame as the node reports it",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
            registry=r,
        )
        self.nodes = Gauge("farm_nodes", "Nodes by state", ["state"], registry=r)
        self.queue_batches = Gauge("farm_queue_batches", "Batches waiting for a node", registry=r)
        self.jobs = Gauge("farm_jobs", "Jobs by state", ["state"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
