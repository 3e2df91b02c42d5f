"""A loop thread: the scheduler and all node traffic on a thread with an event loop of its own.

What `links.ThreadLink` runs (the tests, `orchestrator --single-process`); the `orchestrator`
command runs them in a process of its own instead (`links.ProcessLink`). The HTTP API keeps
the server's loop to itself, so `GET /render/{id}` does not wait behind whole turns of a loop
that hundreds of slots keep busy polling, dispatching and collecting (benchmarks/scale.py: p99
1,064 -> 237 ms; the GIL still shares one core between them, hence the process). The two
threads share the store (its own threads and connections), the registry (plain data, read
whole) and the metrics (thread-safe); anything that touches the scheduler's queues runs on the
loop thread, through `call`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
STOP_SECONDS = 15.0


class BackendUnavailable(RuntimeError):
    """The backend is not running (not started yet, stopped, or its loop died)."""


class LoopThread:
    def __init__(self, name: str = "farm-engine") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    async def start(self, setup: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Start the thread and run `setup()` on its loop; its result, or its exception."""
        loop_ready: concurrent.futures.Future[asyncio.AbstractEventLoop] = (
            concurrent.futures.Future()
        )

        def main() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            loop_ready.set_result(loop)
            try:
                loop.run_forever()
            finally:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=main, name=self._name, daemon=True)
        self._thread.start()
        self._loop = await asyncio.wrap_future(loop_ready)
        return await self.call(setup)

    async def call(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        """Await `fn(*args)` run on the engine loop, from another loop."""
        if self._loop is None or self._loop.is_closed():
            raise BackendUnavailable("the scheduler is not running")
        future = asyncio.run_coroutine_threadsafe(fn(*args), self._loop)
        return await asyncio.wrap_future(future)

    def soon(self, fn: Callable[..., object], *args: Any) -> None:
        """Run plain `fn(*args)` on the engine loop, without waiting for it."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    async def stop(
        self,
        teardown: Callable[[], Coroutine[Any, Any, None]] | None = None,
        within: float = STOP_SECONDS,
    ) -> None:
        """Run `teardown()` on the engine loop, then stop the loop and join the thread; each
        step bounded by `within` seconds (what is still running then is cancelled with the loop)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if teardown is not None and not loop.is_closed():
                await asyncio.wait_for(self.call(teardown), within)
        except (TimeoutError, BackendUnavailable):
            log.warning("the scheduler did not stop within %.0f s", within)
        finally:
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            await asyncio.to_thread(thread.join, within)
            if thread.is_alive():
                log.warning("the engine thread did not end within %.0f s", within)
            self._loop = self._thread = None


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
