"""How the HTTP API reaches the scheduler's side (`Backend`): a thread, or a process of its own.

`ThreadLink`: the backend runs on a loop thread of this process (runtime/loop_thread.py);
tests use it, and it is what `--single-process` runs. `ProcessLink`: the backend runs in a child
process (`python -m orchestrator.runtime.process`) that answers on a Unix socket. The `orchestrator`
command runs this one: under load the scheduler keeps a core busy, and in one process every
status request waited for its interpreter lock (benchmarks/scale, 100 nodes: p99 96 ms in one
process, see benchmarks/RESULTS.md).

The child reads its settings from its stdin, then keeps reading: when the stdin closes (this
process stopped, or died) it stops its scheduler and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Protocol

import httpx

from orchestrator.runtime.backend import Backend, Facts
from orchestrator.runtime.loop_thread import BackendUnavailable, LoopThread
from orchestrator.settings import OrchestratorSettings
from orchestrator.store.db import QueuedBatch
from orchestrator.store.queries import Job

log = logging.getLogger(__name__)

START_SECONDS = 60.0  # the child's imports, its store's recovery and the scheduler's start
STOP_SECONDS = (
    20.0  # the scheduler gets 15 s to stop (orchestrator/runtime/loop_thread.py), then this
)
COMMAND_SECONDS = 30.0  # a cancel waits for the nodes to drop their part (2-s requests)
READ_SECONDS = 5.0  # the node list, its facts, the metrics
FACTS_SECONDS = 1.0  # how stale the node facts on a status page may be


class Link(Protocol):
    async def enqueue(self, job: Job, batches: list[QueuedBatch]) -> None: ...
    async def cancel(self, job_id: str) -> None: ...
    async def delete(self, job_id: str) -> str | None:
        """Remove an ended job from the store; why not, or None (scheduling.Scheduler.delete)."""
        ...

    async def node_action(self, url: str, action: str) -> dict[str, Any] | None:
        """Drain, pause or resume a node; its view after, or None: no such node."""
        ...

    async def register(self, info: dict[str, Any]) -> str | None:
        """Record a heartbeat; returns why the node was refused, if it was."""
        ...

    async def nodes(self) -> list[dict[str, Any]]: ...
    async def facts(self) -> Facts: ...
    async def metrics(self) -> bytes: ...
    async def aclose(self) -> None: ...


class ThreadLink:
    """The backend on a loop thread of this process: registry reads need no hop (see Registry)."""

    def __init__(self, loop: LoopThread, backend: Backend) -> None:
        self.loop = loop
        self.backend = backend

    @classmethod
    async def start(cls, setup: Callable[[], Coroutine[Any, Any, Backend]]) -> ThreadLink:
        """Start the loop thread and `setup()` (a `Backend.start(...)`) on its loop."""
        loop = LoopThread()
        try:
            backend = await loop.start(setup)
        except BaseException:
            await loop.stop()
            raise
        return cls(loop, backend)

    async def enqueue(self, job: Job, batches: list[QueuedBatch]) -> None:
        await self.loop.call(self.backend.enqueue, job, batches)

    async def cancel(self, job_id: str) -> None:
        await self.loop.call(self.backend.cancel, job_id)

    async def delete(self, job_id: str) -> str | None:
        why: str | None = await self.loop.call(self.backend.delete, job_id)
        return why

    async def node_action(self, url: str, action: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = await self.loop.call(self.backend.node_action, url, action)
        return result

    async def register(self, info: dict[str, Any]) -> str | None:
        refused = self.backend.register(info)
        if refused is None:
            self.loop.soon(self.backend.scheduler.on_node_seen)
        return refused

    async def nodes(self) -> list[dict[str, Any]]:
        return self.backend.nodes()

    async def facts(self) -> Facts:
        return self.backend.facts()

    async def metrics(self) -> bytes:
        return await self.backend.metrics_text()

    async def aclose(self) -> None:
        await self.loop.stop(self.backend.stop)


class ProcessLink:
    """The backend in a child process, asked over a Unix socket (runtime/process.py)."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        folder: Path,
        on_exit: Callable[[int], None],
    ) -> None:
        self.process = process
        self._folder = folder
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(folder / "engine.sock")),
            base_url="http://engine",
            timeout=COMMAND_SECONDS,
        )
        self._on_exit = on_exit
        self._closing = False
        self._facts: tuple[float, Facts] | None = None
        self._refresh: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None

    @classmethod
    async def start(
        cls, settings: OrchestratorSettings, log_level: str, on_exit: Callable[[int], None]
    ) -> ProcessLink:
        """Start the child and wait until it answers. `on_exit(code)` is called if it ends
        before `aclose`."""
        # Not in the data folder: a Unix socket's path has at most 107 bytes.
        folder = Path(tempfile.mkdtemp(prefix="farm-engine-"))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "orchestrator.runtime.process", str(folder / "engine.sock"),
            log_level, stdin=asyncio.subprocess.PIPE,
        )  # fmt: skip
        link = cls(process, folder, on_exit)
        try:
            assert process.stdin is not None
            process.stdin.write(settings.model_dump_json().encode() + b"\n")
            await process.stdin.drain()
            await link._wait_ready()
        except BaseException:
            await link.aclose()
            raise
        link._watch = asyncio.create_task(link._watch_exit(), name="engine-watch")
        return link

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if self.process.returncode is not None:
                raise BackendUnavailable(
                    f"the scheduler process exited with code {self.process.returncode} as it "
                    "started: its error is in the log above"
                )
            with contextlib.suppress(httpx.TransportError):
                if (await self._client.get("/health", timeout=2)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise BackendUnavailable(
                    f"the scheduler process did not start in {START_SECONDS:.0f} s"
                )
            await asyncio.sleep(0.05)

    async def _watch_exit(self) -> None:
        code = await self.process.wait()
        if not self._closing:
            how = f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"
            log.error(
                "the scheduler process %s: the orchestrator stops (start it again: unfinished"
                " jobs go on where they were)",
                how,
            )
            self._on_exit(code)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"the scheduler process did not answer: {exc!r}") from exc
        if resp.status_code != 200:
            raise BackendUnavailable(
                f"the scheduler process answered {resp.status_code}: {resp.text}"
            )
        return resp

    async def enqueue(self, job: Job, batches: list[QueuedBatch]) -> None:
        # The job and its batches are in the store already: the child reads them from there.
        await self._send("POST", f"/jobs/{job.id}/enqueue")

    async def cancel(self, job_id: str) -> None:
        await self._send("POST", f"/jobs/{job_id}/cancel")

    async def delete(self, job_id: str) -> str | None:
        answer = (await self._send("POST", f"/jobs/{job_id}/delete")).json()
        why: str | None = answer.get("refused")
        return why

    async def node_action(self, url: str, action: str) -> dict[str, Any] | None:
        answer = (await self._send("POST", f"/nodes/{action}", json={"url": url})).json()
        view: dict[str, Any] | None = answer.get("node")
        return view

    async def register(self, info: dict[str, Any]) -> str | None:
        answer = (await self._send("POST", "/nodes/register", json=info)).json()
        refused = answer.get("refused")
        return str(refused) if refused is not None else None

    async def nodes(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = (
            await self._send("GET", "/nodes", timeout=READ_SECONDS)
        ).json()
        return nodes

    async def facts(self) -> Facts:
        """At most FACTS_SECONDS old: a status request asks the child only when there are
        none yet, and otherwise refreshes them in the background."""
        if self._facts is None:
            await self._fetch_facts()
        elif time.monotonic() - self._facts[0] > FACTS_SECONDS and (
            self._refresh is None or self._refresh.done()
        ):
            self._refresh = asyncio.create_task(self._refresh_facts())
        assert self._facts is not None
        return self._facts[1]

    async def _fetch_facts(self) -> None:
        data = (await self._send("GET", "/facts", timeout=READ_SECONDS)).json()
        facts = Facts(data["total_slots"], data["blender_versions"], data.get("tags", {}))
        self._facts = (time.monotonic(), facts)

    async def _refresh_facts(self) -> None:
        try:
            await self._fetch_facts()
        except BackendUnavailable as exc:  # the last facts stay; the watch reports a dead child
            log.debug("node facts not refreshed: %s", exc)

    async def metrics(self) -> bytes:
        return (await self._send("GET", "/metrics", timeout=READ_SECONDS)).content

    async def aclose(self) -> None:
        """Close the child's stdin (it stops its scheduler and exits); kill it after
        STOP_SECONDS."""
        self._closing = True
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), STOP_SECONDS)
        except TimeoutError:
            log.warning("the scheduler process did not stop in %.0f s: killed", STOP_SECONDS)
            self.process.kill()
            await self.process.wait()
        for task in (self._watch, self._refresh):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        await self._client.aclose()
        shutil.rmtree(self._folder, ignore_errors=True)
