"""The engine thread: the scheduler's loop, apart from the API's."""

from __future__ import annotations

import asyncio
import threading

import pytest

from orchestrator.runtime.loop_thread import BackendUnavailable, LoopThread


def test_calls_run_on_the_engine_thread_and_return_their_result() -> None:
    async def main() -> None:
        engine = LoopThread(name="test-engine")

        async def where(x: int) -> tuple[str, int]:
            await asyncio.sleep(0)
            return threading.current_thread().name, x * 2

        assert await engine.start(lambda: where(1)) == ("test-engine", 2)
        assert await engine.call(where, 21) == ("test-engine", 42)
        seen = threading.Event()
        names: list[str] = []

        def plain() -> None:
            names.append(threading.current_thread().name)
            seen.set()

        engine.soon(plain)
        assert await asyncio.to_thread(seen.wait, 5)
        assert names == ["test-engine"]
        await engine.stop()

    asyncio.run(main())


def test_a_failing_setup_is_raised_by_start() -> None:
    async def main() -> None:
        engine = LoopThread()

        async def setup() -> None:
            raise OSError("database is locked")

        with pytest.raises(OSError, match="database is locked"):
            await engine.start(setup)
        await engine.stop()

    asyncio.run(main())


def test_stop_runs_teardown_there_and_ends_the_thread() -> None:
    async def main() -> None:
        engine = LoopThread(name="stopping-engine")
        started: list[asyncio.Task[None]] = []

        async def forever() -> None:
            await asyncio.sleep(3600)

        async def setup() -> None:
            started.append(asyncio.get_running_loop().create_task(forever()))

        await engine.start(setup)
        torn_down: list[str] = []

        async def teardown() -> None:
            torn_down.append(threading.current_thread().name)

        await engine.stop(teardown)
        assert torn_down == ["stopping-engine"]
        assert started[0].cancelled()  # what was left running went with the loop
        assert not any(t.name == "stopping-engine" for t in threading.enumerate())
        with pytest.raises(BackendUnavailable):
            await engine.call(teardown)

    asyncio.run(main())


def test_a_teardown_that_hangs_does_not_hang_stop() -> None:
    async def main() -> None:
        engine = LoopThread(name="hanging-engine")

        async def setup() -> None:
            return None

        await engine.start(setup)

        async def teardown() -> None:
            await asyncio.sleep(3600)

        await engine.stop(teardown, within=0.2)
        assert not any(t.name == "hanging-engine" for t in threading.enumerate())

    asyncio.run(main())
