"""Helpers for the Docker end-to-end tests: the farm's HTTP API, compose and swarm stacks.

The tests drive real containers built from docker/*.Dockerfile; nothing here is a fake.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import docker
import httpx
from docker.models.containers import Container

from farm_common.frames import parse_frame_spec

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose.yaml"
# What `docker compose up` reads beside it on its own (but not once -f names a file).
COMPOSE_OVERRIDE = ROOT / "compose.override.yaml"
SWARM_FILE = ROOT / "compose.swarm.yaml"
DEMO_SCENE = ROOT / "scenes" / "demo.blend"
ARTIFACTS = ROOT / "test-artifacts"
IMAGES = ("blender-farm/render-node:latest", "blender-farm/orchestrator:latest")
DONE_STATES = frozenset({"done", "completed"})
TERMINAL_JOB_STATES = frozenset({"completed", "failed", "cancelled"})

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 0.5) -> T:
    """Call `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        try:
            value = probe()
            if value:
                return value
        except (httpx.HTTPError, docker.errors.APIError) as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{detail}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def compose_command() -> list[str]:
    """`docker compose` (v2) when the plugin is there, else the standalone `docker-compose`."""
    if override := os.environ.get("FARM_COMPOSE"):
        return override.split()
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise RuntimeError("neither `docker compose` nor `docker-compose` is installed")


def host_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def batch_frames(batch: dict[str, Any]) -> list[int]:
    return parse_frame_spec(str(batch["frames"]))


class FarmAPI:
    """The orchestrator's HTTP API as the tests use it (contract in DESIGN.md)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10.0
        )

    def close(self) -> None:
        self.http.close()

    def healthy(self) -> bool:
        try:
            response = self.http.get("/health", timeout=3.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200 and response.json().get("status") == "ok"

    def nodes(self) -> list[dict[str, Any]]:
        response = self.http.get("/nodes")
        response.raise_for_status()
        body = response.json()
        return list(body["nodes"] if isinstance(body, dict) else body)

    def healthy_nodes(self) -> list[dict[str, Any]]:
        return [n for n in self.nodes() if n.get("state") in ("healthy", "busy")]

    def wait_nodes(self, count: int, timeout: float = 120.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            nodes = self.healthy_nodes()
            return nodes if len(nodes) >= count else None

        return wait_for(f"{count} healthy nodes in GET /nodes", enough, timeout)

    def upload_scene(self, path: Path = DEMO_SCENE) -> str:
        with path.open("rb") as f:
            response = self.http.post(
                "/scenes", files={"file": (path.name, f, "application/octet-stream")}
            )
        response.raise_for_status()
        return str(response.json()["scene"])

    def render(self, scene: str, frames: str, batch_size: int) -> str:
        response = self.http.post(
            "/render", json={"scene": scene, "frames": frames, "batch_size": batch_size}
        )
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.http.get(f"/render/{job_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait_job(self, job_id: str, timeout: float = 180.0) -> dict[str, Any]:
        last: dict[str, Any] = {}

        def finished() -> dict[str, Any] | None:
            last.update(self.job(job_id))
            return dict(last) if last["state"] in TERMINAL_JOB_STATES else None

        try:
            return wait_for(f"job {job_id} to finish", finished, timeout)
        except AssertionError as exc:
            batches = [(b["frames"], b["node"], b["state"]) for b in last.get("batches", [])]
            raise AssertionError(
                f"{exc}; last seen: {last.get('state')} {last.get('frames')}, batches {batches}"
            ) from None

    def running_batch(self, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """A batch of the job that a node is working on right now."""

        def busy() -> dict[str, Any] | None:
            for batch in self.job(job_id)["batches"]:
                if batch.get("node") and batch["state"] == "running":
                    return dict(batch)
            return None

        return wait_for(f"a batch of job {job_id} on a node", busy, timeout, interval=0.2)

    def frames(self, job_id: str) -> list[dict[str, Any]]:
        """Per-frame state and the node that delivered it."""
        response = self.http.get(f"/render/{job_id}/frames")
        response.raise_for_status()
        return list(response.json()["frames"])

    def frame(self, job_id: str, frame: int) -> httpx.Response:
        return self.http.get(f"/render/{job_id}/frames/{frame}")


def assert_every_frame_once(api: FarmAPI, job: dict[str, Any], frames: Iterable[int]) -> None:
    """The job completed with every frame collected exactly once and downloadable."""
    wanted = list(frames)
    assert job["state"] == "completed", job
    assert job["frames"]["total"] == len(wanted), job["frames"]
    assert job["frames"]["done"] == len(wanted), job["frames"]
    assert job["frames"]["failed"] == 0, job["frames"]
    listed = api.frames(job["id"])
    assert sorted(f["frame"] for f in listed) == sorted(wanted), "each frame listed once"
    assert all(f["state"] == "done" for f in listed), listed
    # Batches count the frames they delivered: more than the frames would mean a double write.
    assert sum(b.get("done", 0) for b in job["batches"]) <= len(wanted), job["batches"]
    for n in wanted:
        response = api.frame(job["id"], n)
        assert response.status_code == 200, (n, response.text[:200])
        assert response.content.startswith(b"\x89PNG"), f"frame {n} is not a PNG"


@dataclass
class ComposeStack:
    """One `compose.yaml` project with a unique name, driven through the compose CLI."""

    project: str
    token: str
    port: int
    client: docker.DockerClient
    command: list[str] = field(default_factory=compose_command)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "FARM_TOKEN": self.token, "FARM_PUBLISH_PORT": str(self.port)}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def network_name(self) -> str:
        return f"{self.project}_farm"

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        files = ["-f", str(COMPOSE_FILE), "-f", str(COMPOSE_OVERRIDE)]
        cmd = [*self.command, "-p", self.project, *files, *args]
        done = subprocess.run(
            cmd, cwd=ROOT, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
        return done

    def up(self, *args: str) -> None:
        self.compose("up", "-d", "--no-build", *args)

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "5")

    def save_logs(self) -> Path:
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"e2e-{self.project}.log"
        try:
            logs = self.compose("logs", "--no-color", "--timestamps", timeout=60).stdout
        except (AssertionError, subprocess.TimeoutExpired) as exc:
            logs = f"could not read logs: {exc}"
        path.write_text(logs)
        return path

    def logs_tail(self, lines: int = 15) -> str:
        """The last lines of each service's logs, for a failure message."""
        parts = []
        for service in ("orchestrator", "render-node"):
            try:
                out = self.compose("logs", "--no-color", "--tail", str(lines), service).stdout
            except (AssertionError, subprocess.TimeoutExpired) as exc:
                out = f"could not read logs: {exc}"
            parts.append(f"--- {service} logs (last {lines} lines per container) ---\n{out}")
        return "\n".join(parts)

    def containers(self, service: str) -> list[Container]:
        return list(
            self.client.containers.list(
                all=True,
                filters={
                    "label": [
                        f"com.docker.compose.project={self.project}",
                        f"com.docker.compose.service={service}",
                    ]
                },
            )
        )

    def container_ip(self, container: Container) -> str:
        container.reload()
        networks = container.attrs["NetworkSettings"]["Networks"]
        return str(networks.get(self.network_name, {}).get("IPAddress", ""))

    def node_container(self, node_url: str) -> Container:
        """The render-node container behind a registered node URL (its own IP)."""
        host = host_of(node_url)
        for container in self.containers("render-node"):
            if self.container_ip(container) == host:
                return container
        raise AssertionError(f"no render-node container has the IP of {node_url}")
