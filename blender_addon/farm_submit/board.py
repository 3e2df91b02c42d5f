"""What the panel shows of the farm: who we are to it, its recent jobs, the job followed, the
last failure. A poller thread refreshes it; the panel only reads it (no network call on the
draw path), and a main-thread timer redraws when it changed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .farm_api import FarmApi, FarmError

RECENT_JOBS = 8
FINAL_STATES = frozenset({"completed", "failed", "cancelled"})


@dataclass(frozen=True)
class Connection:
    url: str
    token: str
    ca_cert: str


def format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "--"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def job_units(job: dict[str, Any]) -> dict[str, int]:
    """What a job's progress counts: its frames, or a split job's pieces (regions, parts)."""
    units = job.get("tiles") or job.get("samples") or job.get("frames") or {}
    return {key: int(units.get(key, 0)) for key in ("total", "done", "failed", "rendering")}


def progress_line(job: dict[str, Any]) -> str:
    """One line for a job: `running: 12/48 frames (25%), ETA 3m 10s`."""
    frames = job.get("frames") or {}
    units = job_units(job)
    state = job.get("state", "?")
    line = f"{state}: {frames.get('done', 0)}/{frames.get('total', 0)} frames"
    if units["total"]:
        line += f" ({100 * units['done'] // units['total']}%)"
    if units["failed"]:
        line += f", {units['failed']} failed"
    if state not in FINAL_STATES:
        if job.get("eta_seconds") is not None:
            line += f", ETA {format_seconds(job['eta_seconds'])}"
        if job.get("waiting"):
            line += f" ({job['waiting']})"
    return line


def job_fraction(job: dict[str, Any]) -> float:
    units = job_units(job)
    return units["done"] / units["total"] if units["total"] else 0.0


class JobBoard:
    """The farm as last seen; every method is safe from any thread."""

    def __init__(
        self,
        api_factory: Callable[[Connection], FarmApi] = lambda c: FarmApi(
            c.url, c.token, c.ca_cert, timeout=5.0
        ),
    ) -> None:
        self._lock = threading.Lock()
        self._api_factory = api_factory
        self._connection: Connection | None = None
        self._identity: dict[str, Any] | None = None
        self._jobs: list[dict[str, Any]] = []
        self._followed: str | None = None
        self._followed_job: dict[str, Any] | None = None
        self._error: str | None = None
        self._refreshed: float | None = None
        self._seen = float("-inf")  # when the panel last drew
        self.version = 0  # bumped on every change, for the redraw timer

    def connect(self, connection: Connection) -> None:
        with self._lock:
            if connection == self._connection:
                return
            self._connection = connection
            self._identity = None
            self._jobs = []
            self._followed_job = None
            self._error = None
            self.version += 1

    def follow(self, job_id: str | None) -> None:
        with self._lock:
            if job_id != self._followed:
                self._followed, self._followed_job = job_id, None
                self.version += 1

    def touch(self) -> None:
        """The panel is on screen: keep it fresh."""
        with self._lock:
            self._seen = time.monotonic()

    def wanted(self, window: float = 10.0) -> bool:
        """Whether a refresh serves anyone: the panel drew lately, or a followed job runs."""
        with self._lock:
            if time.monotonic() - self._seen < window:
                return True
            job = self._followed_job
            return self._followed is not None and (
                job is None or job.get("state") not in FINAL_STATES
            )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "connection": self._connection,
                "identity": self._identity,
                "jobs": list(self._jobs),
                "followed": self._followed,
                "followed_job": self._followed_job,
                "error": self._error,
                "refreshed": self._refreshed,
            }

    def refresh(self) -> str | None:
        """Ask the farm for its recent jobs and the followed job; the failure, if any (also
        kept for the panel)."""
        with self._lock:
            connection, followed, identity = self._connection, self._followed, self._identity
        if connection is None or not connection.url:
            return None
        try:
            api = self._api_factory(connection)
            if identity is None:
                identity = api.whoami()
            jobs = sorted(api.jobs(), key=lambda j: j.get("created") or 0, reverse=True)
            followed_job = api.job(followed) if followed else None
        except FarmError as exc:
            with self._lock:
                if connection == self._connection:
                    self._error = str(exc)
                    self.version += 1
            return str(exc)
        with self._lock:
            if connection == self._connection and followed == self._followed:
                self._identity = identity
                self._jobs = jobs[:RECENT_JOBS]
                self._followed_job = followed_job
                self._error = None
                self._refreshed = time.time()
                self.version += 1
        return None


class Poller:
    """Refreshes a board every `interval` seconds in a daemon thread until stopped."""

    def __init__(self, board: JobBoard, interval: float = 2.0) -> None:
        self.board = board
        self.interval = interval
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="farm-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def poke(self) -> None:
        """Refresh now rather than at the next tick."""
        self._wake.set()

    def stop(self, timeout: float = 6.0) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.board.wanted():
                self.board.refresh()
            self._wake.wait(self.interval)
            self._wake.clear()
