"""What the scheduler needs of its collaborators, and nothing more (Flamenco's interfaces.go).

The real settings, Store, NodeClient, Metrics and BatchRunner satisfy these; the unit tests pass
small fakes. The registry is not abstracted: it is a plain in-memory object on an injectable
clock, which a test builds as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, Protocol, TypeVar

from farm_common.protocol import JobDetail, NodeInfo
from orchestrator.scheduling.batch_runner import Outcome
from orchestrator.store.db import QueuedBatch, Settled
from orchestrator.store.queries import Job

T = TypeVar("T")

# The runner's hook on each poll of a batch's node job: (node URL, batch, the node's answer) ->
# how soon to poll again at the latest (None: as the runner likes).
OnStatus = Callable[[str, QueuedBatch, JobDetail], float | None]
IsCancelled = Callable[[str], bool]


class SchedulerStore(Protocol):
    """The store calls the scheduler makes; each runs on the store's thread through `run`."""

    async def run(self, fn: Callable[..., T], *args: Any) -> T: ...

    def load_learned(self, name: str) -> Any: ...

    def save_learned(self, name: str, value: Any, now: float) -> None: ...

    def recover(
        self, collected: Callable[[str, int], set[int]]
    ) -> tuple[list[QueuedBatch], list[tuple[str, str]]]: ...

    def list_jobs(self, limit: int = 200) -> list[Job]: ...

    def get_job(self, job_id: str) -> Job | None: ...

    def job_states(self, job_ids: list[str]) -> dict[str, str]: ...

    def delete_job(self, job_id: str) -> str | None: ...

    def finish_if_complete(self, job_id: str, now: float) -> str | None: ...

    def cancel_job(self, job_id: str, now: float) -> list[tuple[str, str]]: ...

    def dispatch_batch(
        self,
        batch: QueuedBatch,
        node: str,
        now: float,
        absorbed: Collection[str] = (),
        remainder: QueuedBatch | None = None,
    ) -> bool: ...

    def settle_batch(
        self,
        batch_id: str,
        state: str,
        errors: dict[int, str],
        live_nodes: Collection[str],
        max_attempts: int,
        now: float,
    ) -> Settled: ...

    def fail_waiting_frames(
        self, job_id: str, error: str, nodes: Collection[str], now: float
    ) -> tuple[int, str | None]: ...

    def done_frames(self, job_id: str, tiles: int = 1) -> list[int]: ...

    def start_video(self, job_id: str, now: float) -> bool: ...

    def end_video(self, job_id: str, error: str | None, now: float) -> str | None: ...

    def tiled_counts(self, job_id: str, tiles: int) -> dict[str, int]: ...


class NodeCalls(Protocol):
    """The node requests the scheduler makes itself; the batch's own go through the runner."""

    async def info(self, node: str) -> NodeInfo: ...

    async def delete(self, node: str, job_id: str) -> None: ...


class Count(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class SchedulerMetrics(Protocol):
    @property
    def frames_retried(self) -> Count: ...

    @property
    def frames_failed(self) -> Count: ...


class Runner(Protocol):
    """Runs one batch on one node (orchestrator/scheduling/batch_runner.py)."""

    async def run(self, url: str, job: Job, batch: QueuedBatch) -> Outcome: ...

    def feed_started(self, batch_id: str) -> None: ...

    def feed_done(self, batch_id: str) -> None: ...

    def forget_job(self, job_id: str) -> None: ...


# The runner is built by the scheduler, which owns the hooks it calls back.
RunnerFactory = Callable[[IsCancelled, OnStatus], Runner]


class SchedulerSettings(Protocol):
    """The settings the scheduler reads (OrchestratorSettings has them all)."""

    @property
    def node(self) -> list[str]: ...

    @property
    def renders_dir(self) -> Path: ...

    @property
    def probe_interval_seconds(self) -> float: ...

    @property
    def node_timeout_seconds(self) -> float: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def max_batch_seconds(self) -> float: ...

    @property
    def max_sized_batch(self) -> int: ...
