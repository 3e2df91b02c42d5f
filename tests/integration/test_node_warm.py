"""The bpy engine on a real node, with the stand-in bpy (tests/fake_bpy): warm slots, crashes,
stalls, cancel, checks, devices. The same paths with the real bpy: test_bpy_real.py."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pytest

from render_node.api import create_app
from render_node.devices import DeviceError
from render_node.settings import NodeSettings
from tests.integration.conftest import SCENES, Node, StartNode, group_alive

FAKE_PYTHON = Path(__file__).resolve().parents[1] / "fake_bpy" / "python"
ENGINE = f"bpy:{FAKE_PYTHON}"


class Trace:
    """What the stand-in bpy did, by worker process: scenes opened, frames rendered."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.touch()

    def lines(self) -> list[tuple[int, str, str]]:
        out = []
        for line in self.path.read_text().splitlines():
            pid, what, arg = line.split(" ", 2)
            out.append((int(pid), what, arg))
        return out

    def opens(self) -> list[int]:
        return [pid for pid, what, _ in self.lines() if what == "open"]

    def frames_by_pid(self) -> dict[int, list[int]]:
        found: dict[int, list[int]] = defaultdict(list)
        for pid, what, arg in self.lines():
            if what == "frame":
                found[pid].append(int(arg))
        return dict(found)

    def pid_of_start(self, frame: int, timeout: float = 10) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid, what, arg in self.lines():
                if what == "start" and int(arg) == frame:
                    return pid
            time.sleep(0.02)
        raise AssertionError(f"frame {frame} never started")


@pytest.fixture
def trace(tmp_path: Path) -> Trace:
    return Trace(tmp_path / "bpy-trace.log")


def bpy_node(start_node: StartNode, trace: Trace, env: dict[str, str] | None = None,
             **overrides: object) -> Node:  # fmt: skip
    return start_node(
        env={"FAKE_BLENDER_TRACE": str(trace.path), **(env or {})},
        blender=ENGINE,
        blender_env=["FAKE_BLENDER_*", "FAKE_BPY_*"],
        **overrides,
    )


def test_a_jobs_next_batch_finds_the_scene_loaded(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BLENDER_STARTUP": "0.5"})
    info = node.client.get("/info").json()
    assert (info["engine"], info["blender_version"], info["devices"]) == ("bpy", "5.0.1", ["CPU"])

    first = node.wait(node.submit("1-3", session="job-a"))
    second = node.wait(node.submit("4-6", session="job-a"))
    assert first["state"] == second["state"] == "completed", (first, second)
    assert (first["warm"], second["warm"]) == (False, True)
    # The cold batch paid the import (0.5 s here); the warm one nothing of it.
    assert first["startup_seconds"] >= 0.5 > 0.2 > second["startup_seconds"]
    assert len(trace.opens()) == 1
    assert list(trace.frames_by_pid().values()) == [[1, 2, 3, 4, 5, 6]]
    assert node.client.get("/info").json()["warm"] == ["job-a"]
    for frame in range(4, 7):
        image = node.client.get(f"/jobs/{second['id']}/frames/{frame}")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
    assert "warm worker" in node.client.get(f"/jobs/{second['id']}/log").text


def test_nothing_of_one_job_serves_another(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace)
    node.wait(node.submit("1", session="job-a"))
    other = node.wait(node.submit("2", session="job-b"))
    plain = node.wait(node.submit("3"))  # no session: nothing is kept for later
    again = node.wait(node.submit("4"))
    assert [j["warm"] for j in (other, plain, again)] == [False, False, False]
    assert len(set(trace.opens())) == 4  # a fresh worker each time
    assert node.client.get("/info").json()["warm"] == []


def test_a_crash_fails_only_its_frame_and_a_fresh_worker_renders_the_rest(
    start_node: StartNode, trace: Trace
) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BLENDER_CRASH": "3"})
    job = node.wait(node.submit("1-5", session="job-a"))
    states = {f["frame"]: f["state"] for f in job["frames"]}
    assert states == {1: "done", 2: "done", 3: "failed", 4: "done", 5: "done"}, job
    error = next(f["error"] for f in job["frames"] if f["frame"] == 3)
    assert "SIGSEGV" in error and "frame 3" in error, error
    rendered = list(trace.frames_by_pid().values())
    assert rendered == [[1, 2], [4, 5]]  # two workers: the one that crashed, and a fresh one


def test_a_render_error_fails_its_frame_and_the_worker_goes_on(
    start_node: StartNode, trace: Trace
) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BLENDER_FAIL": "2"})
    job = node.wait(node.submit("1-3", session="job-a"))
    failed = [f for f in job["frames"] if f["state"] == "failed"]
    assert [f["frame"] for f in failed] == [2]
    assert "CUDA error: Out of memory" in failed[0]["error"]
    assert len(trace.opens()) == 1


def test_a_stalled_frame_times_out_and_the_rest_render(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BLENDER_HANG": "2"}, frame_timeout=1.0)
    job = node.wait(node.submit("1-3", session="job-a"), timeout=20)
    states = {f["frame"]: (f["state"], f.get("error", "")) for f in job["frames"]}
    assert states[1][0] == states[3][0] == "done", job
    assert states[2][0] == "failed" and "no progress for 1 s" in states[2][1], job


def test_cancel_kills_the_worker_within_two_seconds(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BLENDER_HANG": "2"})
    job_id = node.submit("1-3", session="job-a")
    pid = trace.pid_of_start(2)
    pgid = os.getpgid(pid)
    began = time.monotonic()
    answer = node.client.delete(f"/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    while group_alive(pgid):
        assert time.monotonic() - began < 2.0, "the worker outlived the cancel by 2 s"
        time.sleep(0.02)
    job = node.job(job_id)
    assert job["state"] == "cancelled"
    assert node.client.get("/info").json()["warm"] == []


def test_the_nodes_checks_run_in_the_worker(start_node: StartNode, trace: Trace) -> None:
    refusing = bpy_node(start_node, trace, env={"FAKE_BLENDER_FREESTYLE": "1"})
    job = refusing.wait(refusing.submit("1-2", session="a"))
    assert job["state"] == "failed" and "--allow-freestyle" in job["refused"], job

    missing = "/nowhere/texture.png"
    strict = bpy_node(start_node, trace, env={"FAKE_BLENDER_IMAGES": missing})
    job = strict.wait(strict.submit("1-2", session="a"))
    assert job["state"] == "failed"
    assert all(missing in f["error"] for f in job["frames"]), job
    allowed = strict.wait(strict.submit("1-2", session="b", allow_missing=True))
    assert allowed["state"] == "completed"
    assert allowed["warnings"] == [f"missing image {missing}"]


def test_a_worker_over_its_memory_limit_says_so(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BLENDER_ALLOCATE_MB": "600"}, memory_limit_mb=300)
    job = node.wait(node.submit("1", session="a"))
    assert job["state"] == "failed"
    assert "--memory-limit-mb" in job["frames"][0]["error"], job


def test_an_idle_warm_worker_stops(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace, warm_seconds=0.5)
    node.wait(node.submit("1", session="a"))
    (pid,) = trace.opens()
    deadline = time.monotonic() + 10
    while node.client.get("/info").json()["warm"]:
        assert time.monotonic() < deadline, "the idle worker was kept"
        time.sleep(0.1)
    assert not group_alive(os.getpgid(pid)) if _exists(pid) else True


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


GPUS = (
    '[{"type": "CUDA", "id": "CUDA_0", "name": "GPU A"},'
    ' {"type": "CUDA", "id": "CUDA_1", "name": "GPU B"},'
    ' {"type": "OPTIX", "id": "OPTIX_0", "name": "GPU A"}]'
)


def test_a_slot_per_gpu(start_node: StartNode, trace: Trace) -> None:
    node = bpy_node(start_node, trace, env={"FAKE_BPY_DEVICES": GPUS}, device="cuda", gpus="0,1")
    info = node.client.get("/info").json()
    assert info["slots"] == 2
    assert info["devices"] == ["CUDA: GPU A", "CUDA: GPU B"] and info["device"] == "gpu"
    first = node.submit("1-2", session="a")
    second = node.submit("3-4", session="b")
    devices = {node.wait(j)["device"] for j in (first, second)}
    assert devices == {"CUDA: GPU A", "CUDA: GPU B"}

    auto = bpy_node(start_node, trace, env={"FAKE_BPY_DEVICES": GPUS}, device="auto")
    assert auto.client.get("/info").json()["devices"] == ["OPTIX: GPU A"]


def test_devices_that_are_not_there_stop_the_node(tmp_path: Path) -> None:
    environ = {**os.environ, "FAKE_BPY_DEVICES": GPUS}
    base = {
        "data_dir": tmp_path / "n", "scenes_dir": SCENES, "blender": ENGINE,
        "blender_env": ["FAKE_BPY_*"], "sandbox": "none",
    }  # fmt: skip
    with pytest.raises(DeviceError, match="no HIP device"):
        create_app(NodeSettings(**base, device="hip"), environ=environ)
    with pytest.raises(DeviceError, match="no CUDA GPU 2"):
        create_app(NodeSettings(**base, device="cuda", gpus="0,2"), environ=environ)
    cpu = create_app(NodeSettings(**base, device="auto"), environ=dict(os.environ))
    assert cpu.state.manager.devices == [None]


def test_a_warm_worker_renders_one_region_per_batch_then_whole_frames_again(
    start_node: StartNode, trace: Trace
) -> None:
    """Tiles of one job share the warm worker; each batch sets its own border, and a batch
    of whole frames after them gets the scene's own settings back."""
    node = bpy_node(start_node, trace)
    top_left = {"cols": 2, "rows": 2, "col": 0, "row": 0}
    bottom_right = {"cols": 2, "rows": 2, "col": 1, "row": 1}
    jobs = [
        node.wait(node.submit("1", session="job-a", tile=top_left)),
        node.wait(node.submit("1", session="job-a", tile=bottom_right)),
        node.wait(node.submit("2", session="job-a")),
    ]
    assert [j["state"] for j in jobs] == ["completed"] * 3, jobs
    assert [j["warm"] for j in jobs] == [False, True, True]
    borders = [arg for _, what, arg in trace.lines() if what == "border"]
    assert borders == ["1:0.0,0.5,0.5,1.0:1", "1:0.5,1.0,0.0,0.5:1"]  # none for frame 2
    assert len(trace.opens()) == 1

    refused = node.client.post(
        "/jobs", json={"scene": "demo.blend", "frames": "1", "tile": {**top_left, "col": 2}}
    )
    assert refused.status_code == 422 and "no region (2, 0)" in refused.text, refused.text
