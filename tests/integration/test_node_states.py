"""Drain, pause and resume a node on a farm of real processes (fake Blender): a drained node
finishes what it has and takes nothing more, a paused one gives its batch back at once with no
attempt counted, both come back on resume, and the state survives a restart."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.integration.farm_procs import Farm, farm, submit
from tests.orch_helpers import wait_job, wait_until


def state_of(client: httpx.Client, url: str) -> str:
    (node,) = [n for n in client.get("/nodes").json() if n["url"] == url]
    return str(node["state"])


def act(client: httpx.Client, action: str, url: str) -> dict[str, object]:
    resp = client.post(f"/nodes/{action}", json={"url": url})
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def two_nodes(f: Farm, seconds: str) -> tuple[httpx.Client, str, str]:
    f.start_orchestrator()
    a = f.start_node(SECONDS=seconds)
    b = f.start_node(SECONDS=seconds)
    client = f.client()
    f.wait_nodes(client, 2)
    return client, a.url, b.url


def test_a_drained_node_finishes_its_batch_and_takes_no_more(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client, a, _ = two_nodes(f, "0.3")
        job_id = submit(client, frames="1-16", batch_size=2)
        wait_until(lambda: len(f.rendered_by(0)) >= 1, 30, "node a renders")
        assert act(client, "drain", a)["state"] == "draining"
        wait_until(lambda: not [n for n in client.get("/nodes").json()
                                if n["url"] == a and n["busy"]], 30, "a's batch")  # fmt: skip
        rendered = len(f.rendered_by(0))
        assert rendered % 2 == 0  # its batches ended whole
        time.sleep(1.5)
        assert len(f.rendered_by(0)) == rendered and state_of(client, a) == "draining"
        assert act(client, "resume", a)["state"] in ("healthy", "busy")
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert sorted(f.rendered_by(0) + f.rendered_by(1)) == list(range(1, 17))  # once each


def test_a_paused_node_gives_its_batch_back_at_once(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        client, a, _ = two_nodes(f, "1.5")
        job_id = submit(client, frames="1-6", batch_size=3)
        wait_until(lambda: {n["url"]: n["busy"] for n in client.get("/nodes").json()}[a] == 1,
                   30, "a busy")  # fmt: skip
        paused_at = time.monotonic()
        assert act(client, "pause", a)["state"] == "paused"
        wait_until(lambda: not [n for n in client.get("/nodes").json()
                                if n["url"] == a and n["busy"]], 10, "a's batch back")  # fmt: skip
        assert time.monotonic() - paused_at < 5  # not after its frames: within seconds
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        # a finished at most the frame it was on; b rendered the rest, a's frames too, and
        # none of them counts an attempt.
        assert len(f.rendered_by(0)) <= 1
        assert set(f.rendered_by(0) + f.rendered_by(1)) == {1, 2, 3, 4, 5, 6}
        frames = client.get(f"/render/{job_id}/frames").json()["frames"]
        assert all(fr["attempts"] == 0 for fr in frames), frames
        assert state_of(client, a) == "paused"


def test_node_states_survive_a_restart_and_mistakes_are_4xx(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        first = f.start_orchestrator()
        a = f.start_node()
        client = f.client()
        f.wait_nodes(client, 1)
        act(client, "pause", a.url)
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(5)
        f.start_orchestrator()
        wait_until(lambda: any(n["url"] == a.url for n in client.get("/nodes").json()), 20,
                   "the node registers again")  # fmt: skip
        assert state_of(client, a.url) == "paused"
        job_id = submit(client, frames="1")
        time.sleep(1.0)
        assert client.get(f"/render/{job_id}").json()["state"] == "queued"  # nobody takes it
        act(client, "resume", a.url)
        assert wait_job(client, job_id, timeout=30)["state"] == "completed"

        resp = client.post("/nodes/drain", json={"url": "http://127.0.0.1:9"})
        assert resp.status_code == 404 and "as GET /nodes lists it" in resp.text
        assert client.post("/nodes/pause", json={}).status_code == 422


def test_a_node_stopped_with_sigterm_hands_its_batch_back_within_seconds(
    tmp_path: Path,
) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator("--node-timeout-seconds", "60")  # far longer than the test
        a = f.start_node(SECONDS="2")
        f.start_node(SECONDS="0.2")
        client = f.client()
        f.wait_nodes(client, 2)
        job_id = submit(client, frames="1-6", batch_size=3)
        wait_until(lambda: {n["url"]: n["busy"] for n in client.get("/nodes").json()}[a.url] == 1,
                   30, "a busy")  # fmt: skip
        stopped = time.monotonic()
        assert a.stop() in (0, -signal.SIGTERM)  # uvicorn ends by the signal it caught
        assert state_of(client, a.url) == "lost"  # said so on its way out
        status = wait_job(client, job_id, timeout=30)
        assert status["state"] == "completed", status
        assert time.monotonic() - stopped < 20  # not the 60 s of the loss timeout
        assert "told orchestrator" in a.output()


def hours_around_now(inside: bool) -> str:
    """Active hours in this machine's local time that hold now, or that do not."""
    now = time.localtime()
    start = (now.tm_hour + (23 if inside else 2)) % 24
    return f"{start:02d}:00-{(start + 3) % 24:02d}:00"


def test_a_node_outside_its_active_hours_takes_no_batches(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        f.start_orchestrator()
        night = f.start_node(extra=("--active-hours", hours_around_now(inside=False)))
        client = f.client()
        f.wait_nodes(client, 1)
        (node,) = client.get("/nodes").json()
        assert (node["state"], node["off_hours"]) == ("draining", True)
        job_id = submit(client, frames="1-4")
        time.sleep(1.0)
        status = client.get(f"/render/{job_id}").json()
        assert status["frames"]["done"] == 0 and "none takes work now" in status["waiting"]
        f.start_node(extra=("--active-hours", hours_around_now(inside=True)))
        status = wait_job(client, job_id, timeout=30)
        assert status["state"] == "completed" and list(status["nodes"]) != [night.url]
        assert f.rendered_by(0) == [] and sorted(f.rendered_by(1)) == [1, 2, 3, 4]
