"""The whole farm as real processes on loopback: orchestrator + render nodes + fake Blender."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from farm_common.frames import parse_frame_spec
from farm_common.protocol import frame_name
from tests.integration.farm_procs import blender_processes, farm, submit
from tests.orch_helpers import wait_job, wait_until


def frame_files(frames: list[int]) -> list[str]:
    return sorted(frame_name(f, ".png") for f in frames)


def test_static_nodes_render_a_spec_with_steps_and_lists_each_frame_once(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        nodes = [f.start_node(register=False) for _ in range(3)]
        f.start_orchestrator(*[arg for n in nodes for arg in ("--node", n.url)])
        client = f.client()
        f.wait_nodes(client, 3)
        spec = "1-12,20-30x5,7,40"
        job_id = submit(client, frames=spec, batch_size=2)
        status = wait_job(client, job_id, timeout=60)
        frames = parse_frame_spec(spec)
        assert status["state"] == "completed", status
        assert status["frames"]["done"] == len(frames)
        assert f.outputs(job_id) == frame_files(frames)
        rendered = f.rendered()
        assert set(rendered) == set(frames) and set(rendered.values()) == {1}
        assert len(status["nodes"]) == 3  # dynamic pull spread the work


def test_node_killed_mid_job_its_frames_are_rendered_elsewhere(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(SECONDS="0.15")
        client = f.client()
        f.wait_nodes(client, 3)
        job_id = submit(client, frames="1-36", batch_size=3)
        wait_until(lambda: len(f.rendered_by(0)) >= 1, 30, "node 0 rendering")
        os.killpg(f.nodes[0].process.pid, signal.SIGKILL)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed"
        assert f.outputs(job_id) == frame_files(list(range(1, 37)))

        def node0() -> str:
            nodes = {n["url"]: n for n in client.get("/nodes").json()}
            return str(nodes[f.nodes[0].url]["state"])

        wait_until(lambda: node0() == "lost", 10, "node 0 lost")


def test_frozen_node_is_detected_lost_within_10s_and_its_frames_requeued(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(SECONDS="0.1")
        client = f.client()
        f.wait_nodes(client, 3)
        job_id = submit(client, frames="1-60", batch_size=4)
        wait_until(lambda: len(f.rendered_by(0)) >= 1, 30, "node 0 rendering")
        os.kill(f.nodes[0].process.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()

        def node0_lost() -> bool:
            nodes = {n["url"]: n for n in client.get("/nodes").json()}
            return bool(nodes[f.nodes[0].url]["state"] == "lost")

        wait_until(node0_lost, 12, "node 0 lost")
        assert time.monotonic() - frozen_at <= 10
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed"
        assert f.outputs(job_id) == frame_files(list(range(1, 61)))
        os.kill(f.nodes[0].process.pid, signal.SIGCONT)
        wait_until(lambda: not node0_lost(), 10, "node 0 back")


def test_poison_frame_fails_after_three_nodes_and_the_rest_completes(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(FAIL="5")
        client = f.client()
        f.wait_nodes(client, 3)
        job_id = submit(client, frames="1-10", batch_size=2)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "failed"
        assert status["frames"]["done"] == 9 and status["frames"]["failed"] == 1
        (failed,) = status["failed_frames"]
        assert failed["frame"] == 5 and "CUDA error" in failed["error"]
        assert sorted(failed["nodes"]) == sorted(n.url for n in f.nodes)
        assert f.outputs(job_id) == frame_files([1, 2, 3, 4, 6, 7, 8, 9, 10])
        assert f.rendered()[5] == 0  # a failed frame is never "rendered"


def test_crash_on_one_frame_fails_only_that_frame(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(CRASH="5")
        client = f.client()
        f.wait_nodes(client, 3)
        job_id = submit(client, frames="1-8", batch_size=4)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "failed"
        assert [x["frame"] for x in status["failed_frames"]] == [5]
        assert f.outputs(job_id) == frame_files([1, 2, 3, 4, 6, 7, 8])


def test_orchestrator_killed_and_restarted_resumes_without_rerendering(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        first = f.start_orchestrator()
        for _ in range(2):
            f.start_node(SECONDS="0.1")
        client = f.client()
        f.wait_nodes(client, 2)
        job_id = submit(client, frames="1-50", batch_size=5)
        wait_until(lambda: client.get(f"/render/{job_id}").json()["frames"]["done"] >= 10)
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(5)
        collected = {int(name[6:11]) for name in f.outputs(job_id)}
        assert 10 <= len(collected) < 50
        f.start_orchestrator()
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed"
        assert f.outputs(job_id) == frame_files(list(range(1, 51)))
        rendered = f.rendered()
        assert all(rendered[frame] == 1 for frame in collected)


def test_cancel_stops_blender_on_every_node(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(2):
            f.start_node(SECONDS="0.5")
        client = f.client()
        f.wait_nodes(client, 2)
        job_id = submit(client, frames="1-100", batch_size=10)
        marker = str(tmp_path)
        wait_until(lambda: len(blender_processes(marker)) >= 2, 30, "both nodes rendering")
        resp = client.delete(f"/render/{job_id}")
        assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
        wait_until(lambda: not blender_processes(marker), 3, "no Blender left")
        assert client.get(f"/render/{job_id}").json()["state"] == "cancelled"


def test_higher_priority_job_goes_first_once_a_node_registers(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        client = f.client()
        low = submit(client, frames="1-6", batch_size=2)
        high = submit(client, frames="101-106", batch_size=2, priority=10)
        assert client.get(f"/render/{low}").json()["state"] == "queued"
        f.start_node()  # registers via --orchestrator
        assert wait_job(client, low, timeout=60)["state"] == "completed"
        assert wait_job(client, high, timeout=60)["state"] == "completed"
        assert f.rendered_by(0) == [*range(101, 107), *range(1, 7)]
        (node,) = client.get("/nodes").json()
        assert node["url"] == f.nodes[0].url and node["frames_rendered"] == 12
        assert node["blender_version"]


def test_token_farm_nodes_register_and_render_with_the_token(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator("--token", "s3cret")
        f.start_node(token="s3cret")
        client = f.client()
        assert client.get("/nodes").status_code == 401
        client.headers["Authorization"] = "Bearer s3cret"
        f.wait_nodes(client, 1)
        job_id = submit(client, frames="1-4")
        assert wait_job(client, job_id, timeout=60)["state"] == "completed"
        assert f.outputs(job_id) == frame_files([1, 2, 3, 4])
