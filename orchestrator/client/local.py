"""`farm up`: an orchestrator and N render nodes as local processes, stopped together.

Nodes register with the orchestrator over HTTP exactly as remote machines do, so the local
farm exercises the same path as a multi-machine one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from farm_common.auth import auth_headers, write_secret
from orchestrator.client.api import LOCAL_TOKEN_FILE

log = logging.getLogger(__name__)


@dataclass
class LocalCluster:
    nodes: int = 3
    port: int = 8000
    host: str = "127.0.0.1"
    node_base_port: int = 8101
    data_dir: Path = Path(".farm")
    scenes_dir: Path = Path("scenes")
    blender: str | None = None
    threads: int | None = None
    slots: int = 1
    token: str | None = None
    log_dir: Path | None = None
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def threads_per_node(self) -> int:
        # Share the cores out so N local Blenders do not fight over the same ones.
        if self.threads:
            return self.threads
        return max(1, (os.cpu_count() or 1) // max(1, self.nodes * self.slots))

    def ensure_token(self) -> str:
        """Use the given token, else the one saved by an earlier `farm up`, else a new one."""
        if self.token:
            return self.token
        token_file = self.data_dir / LOCAL_TOKEN_FILE.name
        if token_file.is_file() and token_file.read_text().strip():
            self.token = token_file.read_text().strip()
        else:
            self.token = secrets.token_urlsafe(24)
            write_secret(token_file, self.token)
        return self.token

    @property
    def join_token_file(self) -> Path:
        """Where the orchestrator keeps the join token its nodes join with."""
        return self.data_dir / "orchestrator" / "join-token"

    def _env(self, node: bool) -> dict[str, str]:
        env = dict(os.environ)
        # Nodes join with the join token and get credentials of their own: never the admin's.
        if node:
            env.pop("FARM_TOKEN", None)
        else:
            env["FARM_TOKEN"] = self.ensure_token()
        if self.blender:
            env["FARM_BLENDER"] = self.blender
        return env

    def _spawn(self, name: str, args: list[str], node: bool = False) -> subprocess.Popen[bytes]:
        log_dir = self.log_dir or (self.data_dir / "logs")
        log_dir.mkdir(parents=True, exist_ok=True)
        with (log_dir / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self._env(node),
                start_new_session=True,
            )
        self.processes.append(proc)
        return proc

    def start(self, wait_seconds: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn(
            "orchestrator",
            [
                "orchestrator",
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir / "orchestrator"),
                "--scenes-dir",
                str(self.scenes_dir),
                "--join-token-file",
                str(self.join_token_file),
            ],
        )
        for i in range(self.nodes):
            self._spawn(f"node-{i + 1}", self.node_args(i), node=True)
        try:
            self.wait_ready(wait_seconds)
        except BaseException:
            self.stop()
            raise

    def node_args(self, i: int) -> list[str]:
        port = self.node_base_port + i
        return [
            "render_node",
            "--host",
            self.host,
            "--port",
            str(port),
            "--data-dir",
            str(self.data_dir / f"node-{i + 1}"),
            "--scenes-dir",
            str(self.scenes_dir),
            "--threads",
            str(self.threads_per_node()),
            "--slots",
            str(self.slots),
            "--orchestrator",
            self.url,
            "--join-token-file",
            str(self.join_token_file),
            "--advertise-url",
            f"http://{self.host}:{port}",
            # Blender never sees the farm's folder: the orchestrator's database and
            # frames, the other nodes' jobs, the token file.
            "--sandbox-hide",
            str(self.data_dir.resolve()),
        ]

    def healthy_nodes(self) -> int:
        try:
            response = httpx.get(f"{self.url}/nodes", headers=auth_headers(self.token), timeout=2.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return 0
        nodes = response.json()
        return sum(1 for n in nodes if n.get("state") in ("healthy", "busy"))

    def wait_ready(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for proc in self.processes:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"a farm process exited with code {proc.returncode} during start-up "
                        f"({_describe(proc)}); see {self.data_dir / 'logs'}"
                    )
            if self.healthy_nodes() >= self.nodes:
                return
            time.sleep(0.2)
        raise TimeoutError(
            f"the farm did not come up within {seconds:.0f} s "
            f"(ports {self.port}, {self.node_base_port}+ in use?); see {self.data_dir / 'logs'}"
        )

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.processes)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process (nodes kill their Blenders), SIGKILL what is left, reap all."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait()
        self.processes.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _describe(proc: subprocess.Popen[bytes]) -> str:
    args = proc.args if isinstance(proc.args, list) else [proc.args]
    return " ".join(str(a) for a in args[2:4])
