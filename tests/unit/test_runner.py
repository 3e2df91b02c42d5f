import asyncio
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import pytest

from farm_common.protocol import image_format
from render_node.batch import Batch
from render_node.blender import build_command
from render_node.runner import BlenderRun, blender_env, describe_exit, verify_output

FAKE_BLENDER = Path(__file__).resolve().parents[1] / "fake_blender.py"
DEMO = Path(__file__).resolve().parents[2] / "scenes" / "demo.blend"
PNG = image_format("PNG")


NODE_ENV = {
    "PATH": "/bin",
    "HOME": "/home/farm",
    "LC_ALL": "C.UTF-8",
    "CUDA_VISIBLE_DEVICES": "0",
    "FARM_TOKEN": "s3cret",
    "FARM_ORCHESTRATOR": "http://o:8000",
    "AWS_SECRET_ACCESS_KEY": "k",
    "PYTHONPATH": "x",
    "BLENDER_USER_SCRIPTS": "/evil",
    "FAKE_BLENDER_X": "1",
}


def test_blender_env_is_an_allow_list_without_the_token() -> None:
    assert blender_env(NODE_ENV) == {
        "PATH": "/bin",
        "HOME": "/home/farm",
        "LC_ALL": "C.UTF-8",
        "CUDA_VISIBLE_DEVICES": "0",
    }


def test_blender_env_adds_named_variables_but_never_farm_ones() -> None:
    env = blender_env(NODE_ENV, ["FAKE_BLENDER_*", "FARM_*", "FARM_TOKEN"])
    assert env["FAKE_BLENDER_X"] == "1"
    assert not [name for name in env if name.startswith("FARM_")]
    assert "AWS_SECRET_ACCESS_KEY" not in env


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "Blender exited with code 0"),
        (1, "Blender exited with code 1"),
        (-11, "Blender died of SIGSEGV"),
        (-9, "Blender died of SIGKILL"),
        (None, "Blender was stopped"),
    ],
)
def test_describe_exit_names_signals(code: int | None, text: str) -> None:
    assert describe_exit(code) == text


def test_verify_output_wants_a_fresh_non_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "frame_00001.png"
    assert "no file" in str(verify_output(path, 0))
    path.write_bytes(b"")
    assert "empty" in str(verify_output(path, 0))
    path.write_bytes(b"png")
    assert verify_output(path, time.time() - 5) is None
    os.utime(path, (1000, 1000))
    assert "older than this render" in str(verify_output(path, time.time() - 5))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_run(tmp_path: Path, frames: list[int], clock: FakeClock, **kw: object) -> BlenderRun:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    command = build_command(str(FAKE_BLENDER), DEMO, out, frames, PNG, 1)
    env = {**os.environ, "FAKE_BLENDER_SECONDS": "0.02", **kw.pop("env", {})}  # type: ignore[dict-item]
    return BlenderRun(
        command,
        Batch(frames),
        frames,
        out,
        PNG,
        env=env,
        log_tail=deque(maxlen=100),
        clock=clock,
        tick=0.01,
        **kw,  # type: ignore[arg-type]
    )


async def wait_until(condition: Callable[[], bool], limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def test_frame_timeout_fires_on_the_clock_not_on_real_time(tmp_path: Path) -> None:
    clock = FakeClock()
    run = make_run(tmp_path, [1, 2, 3], clock, frame_timeout=600.0, env={"FAKE_BLENDER_HANG": "2"})

    async def scenario() -> None:
        task = asyncio.create_task(run.run())
        await wait_until(lambda: run.batch.frames[2].state == "rendering")
        await asyncio.sleep(0.1)
        assert not task.done()  # real time passes, the fake clock does not: no timeout
        clock.now += 601
        result = await asyncio.wait_for(task, 5)
        assert result.timed_out

    asyncio.run(scenario())
    frames = run.batch.frames
    assert frames[1].state == "done"
    assert frames[2].state == "failed"
    assert "no progress for 600 s while rendering" in str(frames[2].error)
    assert frames[3].state == "pending"  # left for the job to run again
    assert run.proc is not None and run.proc.returncode is not None


class FramePacedClock(FakeClock):
    """Moves `step` seconds whenever a frame of `batch` started or ended since it was read."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step
        self.batch: Batch | None = None
        self.seen: list[str] = []

    def __call__(self) -> float:
        states = [r.state for r in self.batch.frames.values()] if self.batch else []
        if states != self.seen:
            self.seen = states
            self.now += self.step
        return self.now


def test_output_resets_the_frame_timeout(tmp_path: Path) -> None:
    # Every frame start and end moves the clock 2 s: over the run past the 5 s timeout, but
    # never 5 s without output. A watchdog not reset by output would time out mid-run.
    clock = FramePacedClock(step=2.0)
    frames = [1, 2, 3]
    run = make_run(tmp_path, frames, clock, frame_timeout=5.0, env={"FAKE_BLENDER_SECONDS": "0.2"})
    clock.batch = run.batch
    result = asyncio.run(asyncio.wait_for(run.run(), 10))
    assert not result.timed_out
    assert clock.now - 1000.0 > 5.0  # the run outlasted the timeout
    assert [r.state for r in run.batch.frames.values()] == ["done"] * len(frames)


def test_cancel_reaps_blender_and_fails_unfinished_frames(tmp_path: Path) -> None:
    run = make_run(tmp_path, [1, 2], FakeClock(), env={"FAKE_BLENDER_HANG": "1"})

    async def scenario() -> None:
        task = asyncio.create_task(run.run())
        await wait_until(lambda: run.batch.frames[1].state == "rendering")
        began = time.monotonic()
        await run.cancel()
        assert time.monotonic() - began < 2.0
        result = await asyncio.wait_for(task, 5)
        assert result.cancelled

    asyncio.run(scenario())
    assert {r.error for r in run.batch.frames.values()} == {"cancelled"}


def test_missing_scene_fails_every_frame_with_blenders_error(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    frames = [1, 2]
    command = build_command(str(FAKE_BLENDER), tmp_path / "gone.blend", out, frames, PNG, 1)
    run = BlenderRun(
        command, Batch(frames), frames, out, PNG, env=dict(os.environ), log_tail=deque()
    )
    result = asyncio.run(run.run())
    assert result.returncode == 0
    for record in run.batch.frames.values():
        assert record.state == "failed"
        assert "Cannot read file" in str(record.error)
        assert "Blender exited with code 0 before rendering frame" in str(record.error)
