"""Render nodes on loopback ports with the fake Blender, for the node's integration tests."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from render_node.api import create_app
from render_node.settings import NodeSettings
from tests.servers import serve_app

ROOT = Path(__file__).resolve().parents[2]
FAKE_BLENDER = ROOT / "tests" / "fake_blender.py"
SCENES = ROOT / "scenes"
FINAL = ("completed", "failed", "cancelled")


@dataclass
class Node:
    url: str
    client: httpx.Client
    data_dir: Path

    def submit(self, frames: str, scene: str = "demo.blend", **extra: Any) -> str:
        response = self.client.post("/jobs", json={"scene": scene, "frames": frames, **extra})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait(
        self, job_id: str, states: tuple[str, ...] = FINAL, timeout: float = 15.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if job["state"] in states:
                return job
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} still {job['state']} after {timeout} s: {job}")
            time.sleep(0.02)

    def wait_frame(self, job_id: str, frame: int, state: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            frames = {f["frame"]: f for f in self.job(job_id)["frames"]}
            if frames[frame]["state"] == state:
                return
            time.sleep(0.02)
        raise AssertionError(f"frame {frame} of {job_id} never became {state}")

    def blender_pgid(self, job_id: str) -> int:
        return blender_pgid(self.data_dir, job_id)


def blender_pgid(data_dir: Path, job_id: str, timeout: float = 10.0) -> int:
    """The process group of a job's Blender, from the pid file the node keeps."""
    pid_file = data_dir / "jobs" / job_id / "blender.pid"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(json.loads(pid_file.read_text())["pgid"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.02)
    raise AssertionError(f"no Blender pid file for job {job_id}")


def group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` still runs.

    Zombies do not count: when a group is killed, grandchildren (e.g. of a pyenv shim that
    starts Python) are reaped by init, not by the node, and linger a moment as zombies.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


StartNode = Callable[..., Node]


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[StartNode]:
    """start_node(env={"FAKE_BLENDER_...": ...}, **NodeSettings fields) -> a running Node."""
    with ExitStack() as stack:
        count = 0

        def start(env: dict[str, str] | None = None, **overrides: Any) -> Node:
            nonlocal count
            count += 1
            fields: dict[str, Any] = {
                "data_dir": tmp_path / f"node{count}",
                "scenes_dir": SCENES,
                "blender": str(FAKE_BLENDER),
                "blender_env": ["FAKE_BLENDER_*"],
                # The fake Blender writes its logs under tmp_path, which a sandbox hides from
                # it; the tests of the sandbox ask for one.
                "sandbox": "none",
                # No GPU discovery: a test node renders on the CPU (test_node_warm.py asks).
                "device": "cpu",
                **overrides,
            }
            settings = NodeSettings(**fields)
            environ = {**os.environ, "FAKE_BLENDER_SECONDS": "0.04", **(env or {})}
            url = stack.enter_context(serve_app(create_app(settings, environ=environ)))
            headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
            # Past the node's own bound on `blender --version` (20 s): /info waits for it, and
            # importing bpy on a busy machine has taken over 10 s.
            client = stack.enter_context(httpx.Client(base_url=url, timeout=30, headers=headers))
            return Node(url, client, fields["data_dir"])

        yield start


@pytest.fixture
def node(start_node: StartNode) -> Node:
    return start_node()
