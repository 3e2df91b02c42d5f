"""The node's Prometheus metrics: slots, busy slots, frames rendered and failed, frame seconds.

One registry per app (no module globals), filled when a job finishes and on each scrape.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from render_node.batch import DONE, FAILED, Batch

FRAME_SECONDS_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class NodeMetrics:
    def __init__(self, slots: int, busy: Callable[[], int]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.slots = Gauge(
            "farm_node_slots", "Blender processes this node runs at once", registry=r
        )
        self.slots.set(slots)
        self.busy = Gauge("farm_node_busy_slots", "Slots running a Blender now", registry=r)
        self.busy.set_function(lambda: float(busy()))
        self.rendered = Counter(
            "farm_node_frames_rendered", "Frames rendered and verified on disk", registry=r
        )
        self.failed = Counter("farm_node_frames_failed", "Frames that failed here", registry=r)
        self.seconds = Histogram(
            "farm_node_frame_seconds",
            "Seconds Blender spent on one rendered frame",
            buckets=FRAME_SECONDS_BUCKETS,
            registry=r,
        )

    def record(self, batch: Batch) -> None:
        for record in batch.frames.values():
            if record.state == DONE:
                self.rendered.inc()
                if record.seconds is not None:
                    self.seconds.observe(record.seconds)
            elif record.state == FAILED:
                self.failed.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
