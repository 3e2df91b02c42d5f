"""A farm of real processes for the benchmarks: `orchestrator` and `render-node` CLIs on loopback.

Nodes register with the orchestrator over HTTP (`--orchestrator`), as `farm up` and remote
machines do. Each node gets its own environment, so its (fake) Blender can have its own speed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import descendants
from tests.integration.farm_procs import base_env
from tests.servers import CliServer, free_port, run_cli

FAKE_BLENDER = Path(__file__).resolve().parents[1] / "tests" / "fake_blender.py"
# A Python whose bpy is the stand-in: `--blender bpy:FAKE_BPY_PYTHON` is the warm engine, fast.
FAKE_BPY_PYTHON = Path(__file__).resolve().parents[1] / "tests" / "fake_bpy" / "python"
FINAL = ("completed", "failed", "cancelled")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test farm's environment (no FARM_*/FAKE_BLENDER_* leaking in) plus `extra`."""
    return {**base_env(), **(extra or {})}


@dataclass
class ProcFarm:
    root: Path
    stack: contextlib.ExitStack
    orchestrator: CliServer | None = None
    nodes: list[CliServer] = field(default_factory=list)
    orch_port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.orch_port}"

    def start_orchestrator(self, scenes_dir: Path, **settings: str) -> CliServer:
        self.orch_port = free_port()
        env = clean_env({f"FARM_{k.upper()}": v for k, v in settings.items()})
        argv = [
            sys.executable, "-m", "orchestrator", "--port", str(self.orch_port),
            "--data-dir", str(self.root / "orch"), "--scenes-dir", str(scenes_dir),
            "--log-level", "warning",
        ]  # fmt: skip
        self.orchestrator = self.stack.enter_context(
            run_cli(argv, port=self.orch_port, env=env, cwd=self.root, startup_timeout=60)
        )
        return self.orchestrator

    def start_node(
        self,
        scenes_dir: Path,
        *,
        blender: str,
        threads: int = 0,
        env: Mapping[str, str] | None = None,
        job_log: bool = False,
    ) -> CliServer:
        """`job_log`: the node logs each job's steps at info level as JSON lines, for
        benchmarks.nodelog to read (its output is kept until the farm stops)."""
        index = len(self.nodes)
        port = free_port()
        argv = [
            sys.executable, "-m", "render_node", "--port", str(port),
            "--data-dir", str(self.root / f"node{index}"), "--scenes-dir", str(scenes_dir),
            "--blender", blender, "--slots", "1", "--threads", str(threads),
            "--orchestrator", self.url, "--advertise-url", f"http://127.0.0.1:{port}",
            "--log-level", "info" if job_log else "warning", "--log-format",
            "json" if job_log else "text", "--blender-env", "FAKE_BLENDER_*",
        ]  # fmt: skip
        if blender in (str(FAKE_BLENDER), f"bpy:{FAKE_BPY_PYTHON}"):
            argv += ["--sandbox", "none"]  # its FAKE_BLENDER_LOG is in a folder a sandbox hides
        node = self.stack.enter_context(
            run_cli(argv, port=port, env=clean_env(env), cwd=self.root, startup_timeout=60)
        )
        self.nodes.append(node)
        return node

    def wait_nodes(self, client: httpx.Client, count: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            nodes = client.get("/nodes").json()
            if sum(n["state"] != "lost" for n in nodes) >= count:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(nodes)} nodes registered after {timeout} s")
            time.sleep(0.05)

    def kill_node(self, index: int) -> None:
        """SIGKILL a node and everything it started (its Blender): a machine that died."""
        pid = self.nodes[index].process.pid
        for victim in [pid, *descendants(pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)


@contextlib.contextmanager
def proc_farm(root: Path) -> Iterator[ProcFarm]:
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        yield ProcFarm(root, stack)


def upload(client: httpx.Client, scene: Path) -> str:
    with scene.open("rb") as fh:
        resp = client.post("/scenes", files={"file": (scene.name, fh, "application/octet-stream")})
    resp.raise_for_status()
    return str(resp.json()["scene"])


def upload_scene(client: httpx.Client, data: bytes) -> str:
    """POST /scenes; returns the scene's "sha256:<hex>" (nodes are sent it, as a user's .blend)."""
    resp = client.post("/scenes", files={"file": ("demo.blend", data)})
    if resp.status_code != 201:
        raise RuntimeError(f"POST /scenes: {resp.status_code} {resp.text}")
    return str(resp.json()["scene"])


def submit(client: httpx.Client, scene: str, frames: str, **extra: Any) -> dict[str, Any]:
    resp = client.post("/render", json={"scene": scene, "frames": frames, **extra})
    if resp.status_code != 202:
        raise RuntimeError(f"POST /render: {resp.status_code} {resp.text}")
    body: dict[str, Any] = resp.json()
    return body


def wait_final(
    client: httpx.Client, job_id: str, timeout: float, every: float = 0.02
) -> dict[str, Any]:
    """Poll GET /render/{id} until the job is over; `every` bounds the end-time error."""
    deadline = time.monotonic() + timeout
    while True:
        status: dict[str, Any] = client.get(f"/render/{job_id}").raise_for_status().json()
        if status["state"] in FINAL:
            return status
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} still {status['state']} after {timeout} s")
        time.sleep(every)
