"""A hostile or broken node cannot wedge a batch, stop scheduling or plant a file: beside a good
node, every job completes with every frame, rendered where it could be (tests/hostile_node.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from tests.fake_node import FakeNode, create_fake_node_app, serve_in_thread
from tests.hostile_node import MODES, hostile
from tests.orch_helpers import fast_settings, orchestrator_in_thread, wait_job, wait_until

FRAMES = 12


@contextlib.contextmanager
def good_and_hostile(
    tmp_path: Path, mode: str, **settings: Any
) -> Iterator[tuple[httpx.Client, FakeNode, FakeNode]]:
    good = FakeNode("good", slots=1, seconds_per_frame=0.02)
    evil = FakeNode("evil", slots=1, seconds_per_frame=0.02)
    app = Starlette(
        routes=[
            Mount("/good", create_fake_node_app(good)),
            Mount("/evil", hostile(create_fake_node_app(evil), mode)),
        ]
    )
    with serve_in_thread(app) as farm:
        urls = [f"{farm}/good", f"{farm}/evil"]
        with (
            orchestrator_in_thread(fast_settings(tmp_path, urls, **settings)) as url,
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            wait_until(lambda: len(client.get("/nodes").json()) == 2, what="both nodes")
            yield client, good, evil


def good_url(client: httpx.Client) -> str:
    (url,) = [n["url"] for n in client.get("/nodes").json() if n["url"].endswith("/good")]
    return str(url)


@pytest.mark.parametrize("mode", [m for m in MODES if m != "slots"])
def test_a_job_completes_on_the_good_node_whatever_the_other_says(
    tmp_path: Path, mode: str
) -> None:
    limits = {
        # Small bounds, so the test does not have to move gigabytes or wait minutes: a status
        # (at most ~1 MB) must come whole within about a second of its read timeout.
        "max_frame_mb": 1,
        "transfer_timeout_seconds": 1.0,
        "min_transfer_kb_per_second": 1024,
    }
    with good_and_hostile(tmp_path, mode, **limits) as (client, good, evil):
        created = client.post(
            "/render", json={"scene": "demo.blend", "frames": f"1-{FRAMES}", "batch_size": 2}
        )
        job_id = created.raise_for_status().json()["id"]
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert status["frames"]["done"] == FRAMES
        frames = client.get(f"/render/{job_id}/frames").json()["frames"]
        assert sorted(f["frame"] for f in frames) == list(range(1, FRAMES + 1))
        # Each mode makes every answer or frame of the hostile node unusable.
        assert {f.get("node") for f in frames} == {good_url(client)}, frames
        for item in frames:  # what was collected is a real frame, from the good node
            image = client.get(f"/render/{job_id}/frames/{item['frame']}")
            assert image.content.startswith(b"\x89PNG\r\n\x1a\n"), (item, image.content[:40])
            assert len(image.content) < 1 << 20
        assert evil.batches >= 1, "the hostile node was given work, and survived"
        assert set(range(1, FRAMES + 1)) <= set(good.rendered)
        # Nothing the hostile node sent is left in the job's folder.
        renders = tmp_path / "orch" / "renders" / job_id
        assert sorted(p.name for p in renders.iterdir()) == sorted(
            f"frame_{n:05d}.png" for n in range(1, FRAMES + 1)
        )
        # The farm still schedules: a second job completes too.
        again = client.post("/render", json={"scene": "demo.blend", "frames": "1-4"}).json()
        assert wait_job(client, again["id"], timeout=60)["state"] == "completed"


def test_a_node_claiming_300000_slots_is_not_taken_at_its_word(tmp_path: Path) -> None:
    with good_and_hostile(tmp_path, "slots") as (client, _good, _evil):

        def evil_entry() -> dict[str, Any]:
            nodes = client.get("/nodes").raise_for_status().json()
            (entry,) = [n for n in nodes if n["url"].endswith("/evil")]
            return dict(entry)

        # It answered its probe (a sign of life), with a body the protocol refuses whole: it
        # stays a node of one slot, what the orchestrator assumes of a node it knows nothing of.
        wait_until(lambda: evil_entry()["last_seen"] is not None, what="a probe of the node")
        assert evil_entry()["slots"] == 1
        job = client.post("/render", json={"scene": "demo.blend", "frames": f"1-{FRAMES}"})
        status = wait_job(client, job.raise_for_status().json()["id"], timeout=60)
        assert status["state"] == "completed" and status["frames"]["done"] == FRAMES
        assert evil_entry()["slots"] == 1


def test_a_node_claiming_absurd_slots_is_taken_at_a_nodes_most(tmp_path: Path) -> None:
    evil = FakeNode("evil", slots=1000, seconds_per_frame=0.01)
    with (
        serve_in_thread(create_fake_node_app(evil)) as node_url,
        orchestrator_in_thread(fast_settings(tmp_path, [node_url])) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: client.get("/nodes").json()[:1], what="the node")
        wait_until(lambda: client.get("/nodes").json()[0]["slots"] != 1, what="its slots")
        assert client.get("/nodes").json()[0]["slots"] == 64
        job = client.post("/render", json={"scene": "demo.blend", "frames": "1-8"}).json()
        assert wait_job(client, job["id"])["state"] == "completed"


def test_a_registration_past_the_node_limit_is_refused_saying_so(tmp_path: Path) -> None:
    with (
        orchestrator_in_thread(fast_settings(tmp_path, [], max_nodes=1)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        first = client.post("/nodes/register", json={"url": "http://127.0.0.1:9", "slots": 1})
        assert first.status_code == 200, first.text
        again = client.post("/nodes/register", json={"url": "http://127.0.0.1:9", "slots": 2})
        assert again.status_code == 200, again.text  # a known node's heartbeat always counts
        other = client.post("/nodes/register", json={"url": "http://127.0.0.1:10", "slots": 1})
        assert other.status_code == 503, other.text
        assert "--max-nodes" in other.json()["detail"]
        assert [n["url"] for n in client.get("/nodes").json()] == ["http://127.0.0.1:9"]


def test_a_registered_url_past_its_length_bound_is_a_422(tmp_path: Path) -> None:
    with (
        orchestrator_in_thread(fast_settings(tmp_path, [])) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        long_url = "http://127.0.0.1:9/" + "a" * 600
        answer = client.post("/nodes/register", json={"url": long_url, "slots": 1})
        assert answer.status_code == 422, answer.text
        assert "url" in answer.text
        assert client.get("/nodes").json() == []
