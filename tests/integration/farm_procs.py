"""A farm of real processes on loopback: `orchestrator` and `render-node` CLIs, fake Blender.

Each node gets its own FAKE_BLENDER_* environment (its Blender inherits it) and its own
FAKE_BLENDER_LOG, so a test can prove which frames were rendered where, and how often.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.orch_helpers import BLEND
from tests.servers import CliServer, free_port, run_cli

FAKE_BLENDER = Path(__file__).resolve().parents[1] / "fake_blender.py"


def base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FARM_", "FAKE_BLENDER_"))}
    env["PYTHONUNBUFFERED"] = "1"
    # The fake Blender's `#!/usr/bin/env python3` finds this interpreter first, not a version
    # manager's shim (pyenv's costs ~75 ms a launch, which would be counted as the farm's).
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@dataclass
class Farm:
    root: Path
    stack: contextlib.ExitStack
    orchestrator: CliServer | None = None
    orch_port: int = 0
    orch_env: dict[str, str] = field(default_factory=dict)
    nodes: list[CliServer] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.orch_port}"

    @property
    def scenes(self) -> Path:
        path = self.root / "scenes"
        path.mkdir(exist_ok=True)
        (path / "demo.blend").write_bytes(BLEND)
        return path

    def start_orchestrator(self, *extra: str, **env: str) -> CliServer:
        if not self.orch_port:
            self.orch_port = free_port()
            self.orch_env = {**base_env(), **{f"FARM_{k.upper()}": v for k, v in env.items()}}
            self.orch_args = extra
        argv = [
            sys.executable, "-m", "orchestrator", "--port", str(self.orch_port),
            "--data-dir", str(self.root / "orch"), "--scenes-dir", str(self.scenes),
            *self.orch_args,
        ]  # fmt: skip
        self.orchestrator = self.stack.enter_context(
            run_cli(argv, port=self.orch_port, env=self.orch_env, cwd=self.root)
        )
        return self.orchestrator

    def start_node(
        self,
        *,
        register: bool = True,
        slots: int = 1,
        blender: str | None = None,
        token: str | None = None,
        extra: tuple[str, ...] = (),
        fakes: Mapping[str, str] | None = None,
        **fake: str,
    ) -> CliServer:
        index = len(self.nodes)
        port = free_port()
        log = self.root / f"node{index}-rendered.log"
        log.touch()
        env = {**base_env(), "FAKE_BLENDER_LOG": str(log), "FAKE_BLENDER_SECONDS": "0.05"}
        env.update({f"FAKE_BLENDER_{k.upper()}": v for k, v in {**(fakes or {}), **fake}.items()})
        argv = [
            sys.executable, "-m", "render_node", "--port", str(port),
            "--data-dir", str(self.root / f"node{index}"), "--scenes-dir", str(self.scenes),
            "--blender", blender or str(FAKE_BLENDER), "--slots", str(slots),
            "--heartbeat-seconds", "1",
            # The fake Blender's FAKE_BLENDER_LOG lies under the test's folder, which a
            # sandbox would hide from it.
            "--blender-env", "FAKE_BLENDER_*", "--sandbox", "none",
        ]  # fmt: skip
        if register:
            argv += ["--orchestrator", self.url, "--advertise-url", f"http://127.0.0.1:{port}"]
        if token:
            argv += ["--token", token]
        argv += extra
        node = self.stack.enter_context(run_cli(argv, port=port, env=env, cwd=self.root))
        self.nodes.append(node)
        self.logs.append(log)
        return node

    def client(self) -> httpx.Client:
        return self.stack.enter_context(httpx.Client(base_url=self.url, timeout=10))

    def rendered(self) -> Counter[int]:
        """How often each frame was rendered, over all nodes (from FAKE_BLENDER_LOG)."""
        counts: Counter[int] = Counter()
        for log in self.logs:
            counts.update(int(line) for line in log.read_text().split())
        return counts

    def rendered_by(self, index: int) -> list[int]:
        return [int(line) for line in self.logs[index].read_text().split()]

    def outputs(self, job_id: str) -> list[str]:
        folder = self.root / "orch" / "renders" / job_id
        return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))

    def start_farm(self, nodes: int = 1, *orchestrator_args: str, **fake: str) -> httpx.Client:
        """An orchestrator and `nodes` nodes of the same FAKE_BLENDER_* `fake`, registered;
        returns a client of the orchestrator."""
        self.start_orchestrator(*orchestrator_args)
        for _ in range(nodes):
            self.start_node(fakes=fake)
        client = self.client()
        self.wait_nodes(client, nodes)
        return client

    def wait_nodes(self, client: httpx.Client, count: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            nodes = client.get("/nodes").json()
            if sum(n["state"] != "lost" for n in nodes) >= count:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"only {nodes} after {timeout} s")
            time.sleep(0.1)


@contextlib.contextmanager
def farm(root: Path) -> Iterator[Farm]:
    with contextlib.ExitStack() as stack:
        f = Farm(root, stack)
        try:
            yield f
        finally:
            for node in f.nodes:  # a frozen node cannot stop: wake it before teardown
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node.process.pid, signal.SIGCONT)


def blender_processes(marker: str) -> list[int]:
    """PIDs of (fake) Blender processes whose command line mentions `marker`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            is_blender = any(arg.endswith("fake_blender.py") for arg in argv[:2])
            if is_blender and any(marker in arg for arg in argv):
                pids.append(int(entry.name))
    return pids


def submit(client: httpx.Client, **body: Any) -> str:
    resp = client.post("/render", json={"scene": "demo.blend", **body})
    assert resp.status_code == 202, resp.text
    return str(resp.json()["id"])
