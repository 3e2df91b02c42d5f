"""One bpy worker process (render_node/bpy_worker.py) as the node sees it: started in its own
process group inside the sandbox, spoken to with JSON lines, always killed and reaped.

Requests go to its stdin; its messages come on stdout, one JSON object a line; Blender's own
output comes on stderr and goes to the job's log. Any line on either counts as progress for
the stall timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from render_node.processes import killpg_quietly
from render_node.sandbox import Sandbox

log = logging.getLogger(__name__)

WORKER_SCRIPT = Path(__file__).with_name("bpy_worker.py")
KILL_GRACE = 1.5  # SIGTERM, then SIGKILL: gone well within 2 s
MAX_MESSAGE_BYTES = 1 << 20


class WorkerGone(Exception):
    """The worker ended (crashed, was killed, or closed its output)."""

    def __init__(self, returncode: int | None) -> None:
        super().__init__(f"worker exited with {returncode}")
        self.returncode = returncode


class WorkerStalled(Exception):
    """No message and no line of output for the stall timeout: the worker was killed."""


@dataclass
class Worker:
    """A started worker. `key` says what it holds warm (set once its scene is open)."""

    proc: asyncio.subprocess.Process
    folder: Path  # its own: out/, user/, passes/ and a shot's tree; Blender writes only here
    sandbox: Sandbox
    key: Hashable = None
    version: str | None = None
    clock: Callable[[], float] = time.monotonic
    messages: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    last_output: float = 0.0
    log_tail: deque[str] | None = None  # where Blender's lines go (the current job's log)
    idle_since: float | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls,
        python: str,
        folder: Path,
        *,
        env: Mapping[str, str],
        sandbox: Sandbox,
        read: Sequence[Path],
        memory_limit_mb: int | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> Worker:
        """Start a worker; raises OSError when it cannot be started."""
        argv = sandbox.command(
            [python, "-s", str(WORKER_SCRIPT)],
            read=[WORKER_SCRIPT, folder / "in", *read],
            write=[folder / "out", folder / "user", folder / "passes"],
        )
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                env=dict(env),
                limit=MAX_MESSAGE_BYTES,
                preexec_fn=sandbox.preexec(
                    None if memory_limit_mb is None else memory_limit_mb << 20
                ),
            )
        except subprocess.SubprocessError as exc:
            raise OSError(str(exc)) from exc
        worker = cls(proc, folder, sandbox, clock=clock, last_output=clock())
        worker._tasks = [
            asyncio.create_task(worker._read_messages()),
            asyncio.create_task(worker._read_output()),
        ]
        return worker

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def returncode(self) -> int | None:
        return self.sandbox.returncode(self.proc.returncode)

    async def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            await self.proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            raise WorkerGone(self.returncode()) from exc

    async def next_message(self, stall: float | None, tick: float = 0.2) -> dict[str, Any]:
        """The worker's next message; WorkerGone when it ended first, WorkerStalled (after
        killing it) when it said nothing for `stall` seconds."""
        while True:
            try:
                message = await asyncio.wait_for(self.messages.get(), tick)
            except TimeoutError:
                if stall is not None and self.clock() - self.last_output >= stall:
                    await self.kill()
                    raise WorkerStalled from None
                continue
            if message.get("event") == "_gone":
                self.messages.put_nowait(message)  # every later call says so too
                await self.proc.wait()
                raise WorkerGone(self.returncode())
            return message

    async def _read_messages(self) -> None:
        assert self.proc.stdout is not None
        try:
            while True:
                try:
                    raw = await self.proc.stdout.readline()
                except ValueError:  # a line over the limit: not ours
                    continue
                if not raw:
                    break
                self.last_output = self.clock()
                try:
                    message = json.loads(raw)
                except ValueError:
                    self._line(raw.decode("utf-8", "replace").rstrip())
                    continue
                if isinstance(message, dict):
                    self.messages.put_nowait(message)
        finally:
            self.messages.put_nowait({"event": "_gone"})

    async def _read_output(self) -> None:
        assert self.proc.stderr is not None
        while True:
            try:
                raw = await self.proc.stderr.readline()
            except ValueError:
                continue
            if not raw:
                return
            self.last_output = self.clock()
            self._line(raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _line(self, line: str) -> None:
        if self.log_tail is not None:
            self.log_tail.append(line)

    async def kill(self) -> None:
        """SIGTERM the group, SIGKILL after KILL_GRACE; returns once it is reaped."""
        proc = self.proc
        if proc.returncode is None:
            killpg_quietly(proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(proc.wait()), KILL_GRACE)
            except TimeoutError:
                killpg_quietly(proc.pid, signal.SIGKILL)
        await proc.wait()
        killpg_quietly(proc.pid, signal.SIGKILL)  # stragglers left in its group
        if proc.stdin is not None:
            with contextlib.suppress(Exception):
                proc.stdin.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)
