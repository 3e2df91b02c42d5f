"""Helpers for orchestrator tests: an in-thread orchestrator, scenes, waiting for jobs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from orchestrator.api.app import create_app
from orchestrator.settings import OrchestratorSettings
from tests.fake_node import serve_in_thread

FINAL = ("completed", "failed", "cancelled")
BLEND = b"BLENDER-v300" + b"\0" * 64


def fast_settings(tmp_path: Path, nodes: list[str], **overrides: Any) -> OrchestratorSettings:
    scenes = tmp_path / "scenes"
    scenes.mkdir(exist_ok=True)
    (scenes / "demo.blend").write_bytes(BLEND)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "orch",
        "scenes_dir": scenes,
        "node": nodes,
        "poll_interval": 0.05,
        "probe_interval_seconds": 0.2,
        "node_timeout_seconds": 2.0,
        "request_timeout_seconds": 1.0,
    }
    values.update(overrides)
    return OrchestratorSettings(**values)


@contextlib.contextmanager
def orchestrator_in_thread(settings: OrchestratorSettings) -> Iterator[str]:
    with serve_in_thread(create_app(settings)) as url:
        yield url


def wait_job(
    client: httpx.Client, job_id: str, timeout: float = 30, states: tuple[str, ...] = FINAL
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"/render/{job_id}").raise_for_status().json()
        if status["state"] in states:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {status['state']}: {status}")
        time.sleep(0.05)


def wait_until(predicate: Any, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def heartbeat(orchestrator: str, info: dict[str, Any], every: float = 0.5) -> Iterator[None]:
    """Register a node with the orchestrator and keep heartbeating, as `--orchestrator` does."""
    stop = threading.Event()

    def loop() -> None:
        with httpx.Client(base_url=orchestrator, timeout=2) as client:
            while not stop.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    client.post("/nodes/register", json=info)
                stop.wait(every)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(5)
