"""The orchestrator on a real uvicorn server against in-process fake nodes (fast, no Blender)."""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from farm_common.frames import parse_frame_spec
from farm_common.protocol import frame_name
from orchestrator.api.app import create_app
from orchestrator.video import ffmpeg_available
from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.orch_helpers import (
    BLEND,
    fast_settings,
    heartbeat,
    orchestrator_in_thread,
    wait_job,
    wait_until,
)


def node_urls(base: str, count: int) -> list[str]:
    return [f"{base}/n/{i}" for i in range(count)]


@contextlib.contextmanager
def farm_of(tmp_path: Path, nodes: list[FakeNode]) -> Iterator[tuple[str, httpx.Client]]:
    """The fake nodes served, an orchestrator using them as static nodes, all of them live:
    (the fake farm's base URL, a client of the orchestrator)."""
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, len(nodes)))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: len(client.get("/nodes").json()) == len(nodes), what="nodes")
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        yield farm, client


def test_three_nodes_collect_every_frame_of_a_spec_with_steps_and_lists_once(
    tmp_path: Path,
) -> None:
    nodes = [FakeNode(f"n{i}", slots=2, seconds_per_frame=0.01) for i in range(3)]
    spec = "1-20,30-40x5,7,99"
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 3))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: len(client.get("/nodes").json()) == 3, what="nodes")
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        resp = client.post("/render", json={"scene": "demo.blend", "frames": spec, "batch_size": 3})
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        status = wait_job(client, job_id)
        assert status["state"] == "completed", status
        frames = parse_frame_spec(spec)
        assert status["frames"] == {"total": len(frames), "done": len(frames), "failed": 0,
                                    "rendering": 0}  # fmt: skip
        assert status["progress"] == 1.0
        assert sum(status["nodes"].values()) == len(frames)
        assert all(b["state"] == "done" for b in status["batches"])
        rendered = Counter(f for n in nodes for f in n.rendered)
        assert set(rendered) == set(frames) and max(rendered.values()) == 1
        assert all(n.scene_puts == 1 for n in nodes if n.rendered)
        out = tmp_path / "orch" / "renders" / job_id
        assert sorted(p.name for p in out.iterdir()) == sorted(
            frame_name(f, ".png") for f in frames
        )
        image = client.get(f"/render/{job_id}/frames/35")
        assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
        assert image.headers["content-type"] == "image/png"
        missing = client.get(f"/render/{job_id}/frames/21")
        assert missing.status_code == 404 and "not part of job" in missing.json()["detail"]
        assert 'filename="frame_00035.png"' in image.headers["content-disposition"]
        listed = client.get(f"/render/{job_id}/frames", params={"state": "done"}).json()
        assert [f["frame"] for f in listed["frames"]] == frames
        archive = zipfile.ZipFile(io.BytesIO(client.get(f"/render/{job_id}/frames.zip").content))
        assert len(archive.namelist()) == len(frames)
        # Node jobs are deleted once collected (their disk is cleaned).
        wait_until(lambda: all(not n.jobs for n in nodes), what="node jobs deleted")
        listing = client.get("/render").json()
        assert listing[0]["id"] == job_id
        assert f"farm_frames_rendered_total {len(frames)}.0" in client.get("/metrics").text
        assert client.get("/").status_code == 200  # the dashboard shell
        fmap = client.get(f"/render/{job_id}/framemap").json()
        assert fmap["states"] == "d" * len(frames) and fmap["frames"] == frames
        novideo = client.get(f"/render/{job_id}/video.mp4")
        assert novideo.status_code == 404 and "not asked for" in novideo.json()["detail"]


def test_a_node_is_asked_for_the_scene_once_and_gets_it_again_when_it_lost_it(
    tmp_path: Path,
) -> None:
    node = FakeNode("n0", slots=1, seconds_per_frame=0.02)
    with farm_of(tmp_path, [node]) as (_, client):
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-40", "batch_size": 2}
        ).json()["id"]
        wait_until(lambda: len(node.rendered) >= 6, what="a few batches rendered")
        # Before the loss: one HEAD and one PUT for all the batches so far, not one per batch.
        assert (node.scene_heads, node.scene_puts) == (1, 1)
        node.scenes.clear()  # the node restarted on a fresh disk, say
        status = wait_job(client, job_id)
        assert status["state"] == "completed", status
        assert sorted(node.rendered) == list(range(1, 41))
        # The next submit was answered 404: the scene was pushed again, and the batch sent.
        assert node.scene_puts == 2
        assert node.scene_heads <= 2


def test_the_first_poll_of_a_batch_waits_on_the_node_for_a_change(tmp_path: Path) -> None:
    node = FakeNode("n0", slots=1, startup=0.2, seconds_per_frame=0.05)
    with farm_of(tmp_path, [node]) as (_, client):
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-12", "batch_size": 4}
        ).json()["id"]
        assert wait_job(client, job_id)["state"] == "completed"
    first: dict[str, str | None] = {}
    for node_job, since in node.polls:
        first.setdefault(node_job, since)
    assert len(first) == 3  # one node job a batch
    # Held from the version the node gave at submit, not asked at once.
    assert all(since in ("queued/0/0", "running/0/0") for since in first.values()), first


def test_every_idle_node_gets_its_first_batch_before_frames_are_fetched(tmp_path: Path) -> None:
    # Instant frames: the first batches are done while the last node's is still on its way.
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.0) for i in range(6)]
    nodes[-1].scene_check_seconds = 0.15  # under batchrun.FEED_FIRST_SECONDS
    with farm_of(tmp_path, nodes) as (_, client):
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-24", "batch_size": 2}
        ).json()["id"]
        assert wait_job(client, job_id)["state"] == "completed"

    def first(node: FakeNode, method: str, end: str) -> float:
        asked = [t for t, r in node.requests if r.startswith(method) and r.endswith(end)]
        return min(asked, default=float("inf"))

    last_fed = max(first(n, "POST", "/jobs") for n in nodes)
    first_fetch = min(first(n, "GET", "/frames.tar") for n in nodes)
    assert last_fed < first_fetch < float("inf")


@contextlib.contextmanager
def two_blender_versions(
    tmp_path: Path, fail_frames: frozenset[int] = frozenset()
) -> Iterator[tuple[list[FakeNode], httpx.Client]]:
    """A 4.2.1 node (failing `fail_frames`) and a 3.6.5 node, both with their version known."""
    nodes = [
        FakeNode("new", slots=1, seconds_per_frame=0.01, blender_version="4.2.1",
                 fail_frames=set(fail_frames)),
        FakeNode("old", slots=1, seconds_per_frame=0.01, blender_version="3.6.5"),
    ]  # fmt: skip
    with farm_of(tmp_path, nodes) as (_, client):
        wait_until(lambda: all(n["blender_version"] for n in client.get("/nodes").json()))
        yield nodes, client


def upload(client: httpx.Client, name: str, body: bytes) -> str:
    answer = client.post("/scenes", files={"file": (name, body)})
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["scene"])


def submit_pinned(client: httpx.Client, frames: str, version: str) -> httpx.Response:
    body = {"scene": "demo.blend", "frames": frames, "batch_size": 2, "blender_version": version}
    return client.post("/render", json=body)


def test_a_job_pinned_to_a_blender_version_renders_on_those_nodes_only(tmp_path: Path) -> None:
    with two_blender_versions(tmp_path) as (nodes, client):
        pinned = submit_pinned(client, "1-20", "4.2")
        assert pinned.status_code == 202, pinned.text
        status = wait_job(client, pinned.json()["id"])
        assert status["state"] == "completed"
        assert sorted(nodes[0].rendered) == list(range(1, 21)) and nodes[1].rendered == []
        assert status["blender_version"] == "4.2"
        assert (status["blender_versions"], status["mixed_blender_versions"]) == (["4.2.1"], False)
        # A version no node runs is refused with what the farm has.
        none = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1", "blender_version": "4.3"}
        )
        assert none.status_code == 409
        assert "no node runs Blender 4.3" in none.json()["detail"]
        assert "3.6.5 (1), 4.2.1 (1)" in none.json()["detail"]
        bad = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1", "blender_version": "latest"}
        )
        assert bad.status_code in (400, 422) and "blender_version" in bad.text
        # A scene saved by Blender 4.0 goes to the 4.2 node only; one by 5.0 to none of them.
        saved_40 = upload(client, "shot40.blend", b"BLENDER-v400" + b"\0" * 64)
        job = client.post("/render", json={"scene": saved_40, "frames": "21-24", "batch_size": 1})
        status = wait_job(client, job.json()["id"])
        assert status["state"] == "completed" and status["saved_by"] == "4.0"
        assert sorted(nodes[0].rendered) == list(range(1, 25)) and nodes[1].rendered == []
        saved_50 = upload(client, "shot50.blend", b"BLENDER17-01v0500" + b"\0" * 64)
        newer = client.post("/render", json={"scene": saved_50, "frames": "1"})
        assert newer.status_code == 409, newer.text
        assert "saved by Blender 5.0, newer than every node's" in newer.json()["detail"]
        # Unpinned, the same farm renders on both.
        free = client.post("/render", json={"scene": "demo.blend", "frames": "1-20",
                                            "batch_size": 2}).json()  # fmt: skip
        assert wait_job(client, free["id"])["mixed_blender_versions"] is True


def test_a_pinned_jobs_frame_fails_for_good_on_the_nodes_it_may_use(tmp_path: Path) -> None:
    # The one 4.2 node fails frame 3: it must not wait forever for the 3.6 node, which may not
    # render it.
    with two_blender_versions(tmp_path, fail_frames=frozenset({3})) as (nodes, client):
        job = submit_pinned(client, "1-6", "4.2.1").json()
        status = wait_job(client, job["id"])
    assert status["state"] == "failed" and status["frames"]["failed"] == 1
    assert status["failed_frames"][0]["frame"] == 3
    assert nodes[1].rendered == []


REFUSAL = "Error: Freestyle is enabled in scene 'Scene'; ... start the node with --allow-freestyle"


def render_to_the_end(tmp_path: Path, nodes: list[FakeNode], frames: str) -> dict[str, Any]:
    """A job of `frames` in batches of 2 on these nodes; its status once it ended."""
    with farm_of(tmp_path, nodes) as (_, client):
        body = {"scene": "demo.blend", "frames": frames, "batch_size": 2}
        return wait_job(client, client.post("/render", json=body).json()["id"])


def test_a_scene_every_node_refuses_fails_after_one_batch_a_node(tmp_path: Path) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, refuse=REFUSAL) for i in range(3)]
    status = render_to_the_end(tmp_path, nodes, "1-24")
    assert status["state"] == "failed", status
    assert status["frames"]["failed"] == 24 and status["frames"]["done"] == 0
    assert all(f["error"] == REFUSAL for f in status["failed_frames"])
    assert "--allow-freestyle" in status["error"]
    # One batch a node, not three tries for each of the 12 batches.
    assert [n.batches for n in nodes] == [1, 1, 1]


def test_a_node_that_refuses_the_scene_leaves_it_to_the_others(tmp_path: Path) -> None:
    nodes = [
        FakeNode("strict", slots=1, seconds_per_frame=0.01, refuse=REFUSAL),
        FakeNode("allows", slots=1, seconds_per_frame=0.01),
    ]
    status = render_to_the_end(tmp_path, nodes, "1-24")
    assert status["state"] == "completed", status
    assert sorted(nodes[1].rendered) == list(range(1, 25))
    assert nodes[0].batches == 1


def test_poison_frame_fails_after_three_nodes_and_the_rest_completes(tmp_path: Path) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.01, fail_frames={5}) for i in range(3)]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 3))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-12", "batch_size": 4}
        ).json()["id"]
        status = wait_job(client, job_id)
        assert status["state"] == "failed"
        assert status["frames"]["done"] == 11 and status["frames"]["failed"] == 1
        (failed,) = status["failed_frames"]
        assert failed["frame"] == 5 and "CUDA error" in failed["error"]
        assert len(set(failed["nodes"])) == 3
        assert "CUDA error" in status["error"]
        assert client.get(f"/render/{job_id}/frames/6").status_code == 200
        assert "not collected" in client.get(f"/render/{job_id}/frames/5").json()["detail"]


def test_frozen_node_is_lost_and_its_frames_go_to_the_others(tmp_path: Path) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.05) for i in range(3)]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 3))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-40", "batch_size": 4}
        ).json()["id"]
        wait_until(lambda: len(nodes[0].rendered) >= 1, what="node 0 rendering")
        nodes[0].frozen = True
        try:
            wait_until(lambda: client.get("/nodes").json()[0]["state"] == "lost", 10, "node 0 lost")
            status = wait_job(client, job_id)
            assert status["state"] == "completed"
            files = list((tmp_path / "orch" / "renders" / job_id).glob("frame_*.png"))
            assert len(files) == 40
        finally:
            nodes[0].frozen = False
        # A lost node that comes back is used again.
        wait_until(lambda: client.get("/nodes").json()[0]["state"] != "lost", 10, "node back")


def test_cancel_stops_the_job_on_every_node(tmp_path: Path) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.2) for i in range(2)]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 2))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-100", "batch_size": 10}
        ).json()["id"]
        wait_until(lambda: all(n.jobs for n in nodes), what="both nodes busy")
        resp = client.delete(f"/render/{job_id}")
        assert resp.status_code == 200 and resp.json()["state"] == "cancelled"
        wait_until(
            lambda: all(j.state == "cancelled" for n in nodes for j in n.jobs.values()),
            what="node jobs cancelled",
        )
        before = sum(len(n.rendered) for n in nodes)
        status = wait_job(client, job_id)
        assert status["state"] == "cancelled" and status["frames"]["done"] < 100
        assert client.get("/metrics").text.count('farm_jobs{state="cancelled"} 1.0') == 1
        wait_until(lambda: not any(n.busy for n in nodes), what="nodes idle")
        assert sum(len(n.rendered) for n in nodes) <= before + 2


def test_higher_priority_job_is_dispatched_first(tmp_path: Path) -> None:
    node = FakeNode("solo", slots=1, seconds_per_frame=0.01)
    with (
        serve_in_thread(fake_farm_app([node])) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, [])) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        low = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-10", "batch_size": 2}
        ).json()["id"]
        high = client.post(
            "/render",
            json={"scene": "demo.blend", "frames": "101-110", "batch_size": 2, "priority": 5},
        ).json()["id"]
        assert client.get(f"/render/{low}").json()["state"] == "queued"  # no node yet: it waits
        info = {"url": f"{farm}/n/0", "slots": 1, "busy": 0, "blender_version": "4.2.0",
                "version": "fake", "cpu_count": 2, "name": "solo"}  # fmt: skip
        with heartbeat(url, info):
            low_status, high_status = wait_job(client, low), wait_job(client, high)
            (listed,) = client.get("/nodes").json()
            assert listed["url"] == f"{farm}/n/0" and listed["frames_rendered"] == 20
        assert low_status["state"] == high_status["state"] == "completed"
        assert high_status["finished"] <= low_status["started"]
        assert node.rendered == [*range(101, 111), *range(1, 11)]


def test_a_node_that_registers_again_under_another_url_is_listed_and_fed_once(
    tmp_path: Path,
) -> None:
    # As in a Swarm: the first heartbeat names the container's hostname (unreachable here),
    # the next ones its IP. The same process (`instance`) must not count as two nodes.
    node = FakeNode("solo", slots=1, seconds_per_frame=0.01)
    with (
        serve_in_thread(fake_farm_app([node])) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, [])) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        info = {"slots": 1, "busy": 0, "blender_version": "4.2.0", "version": "fake",
                "cpu_count": 2, "name": "solo", "instance": "0f3a9c"}  # fmt: skip
        first = client.post("/nodes/register", json={**info, "url": "http://127.0.0.1:9"})
        assert first.status_code == 200
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-10", "batch_size": 2}
        ).json()["id"]
        with heartbeat(url, {**info, "url": f"{farm}/n/0"}, every=0.1):
            status = wait_job(client, job_id)
            wait_until(lambda: len(client.get("/nodes").json()) == 1, what="one node listed")
            (listed,) = client.get("/nodes").json()
        assert status["state"] == "completed", status
        assert listed["url"] == f"{farm}/n/0" and listed["state"] != "lost"
        assert listed["frames_rendered"] == 10
        assert sorted(node.rendered) == list(range(1, 11))


def test_bad_input_gets_a_4xx_that_says_what_is_wrong(tmp_path: Path) -> None:
    with (
        orchestrator_in_thread(fast_settings(tmp_path, [], max_upload_mb=1)) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        bad = client.post("/render", json={"scene": "demo.blend", "frames": "10-1"})
        assert bad.status_code == 400 and "reversed" in bad.json()["detail"]
        unknown = client.post("/render", json={"scene": "nope.blend", "frames": "1"})
        assert unknown.status_code == 404 and "unknown scene" in unknown.json()["detail"]
        sneaky = client.post("/render", json={"scene": "../etc/x.blend", "frames": "1"})
        assert sneaky.status_code == 400 and ".." in sneaky.json()["detail"]
        text = client.post("/scenes", files={"file": ("a.blend", b"hello world")})
        assert text.status_code == 415 and "not a .blend" in text.json()["detail"]
        missing = client.post("/render", json={"scene": "sha256:" + "0" * 64, "frames": "1"})
        assert missing.status_code == 404 and "POST /scenes" in missing.json()["detail"]
        big = client.post("/scenes", files={"file": ("big.blend", BLEND + b"\0" * (2 << 20))})
        assert big.status_code == 413 and "larger than 1 MB" in big.json()["detail"]
        up = client.post("/scenes", files={"file": ("shot.blend", BLEND)})
        assert up.status_code == 201 and up.json()["scene"].startswith("sha256:")
        ok = client.post("/render", json={"scene": up.json()["scene"], "frames": "1-3"})
        assert ok.status_code == 202 and ok.json()["status_url"] == f"/render/{ok.json()['id']}"
        # Jobs show the name the scene was uploaded as, next to its hash.
        shown = client.get(f"/render/{ok.json()['id']}").json()
        assert (shown["scene_name"], shown["scene"]) == ("shot.blend", up.json()["scene"])
        assert client.get("/render/nosuchjob").status_code == 404
        assert client.post("/render", json={"frames": "1"}).status_code == 422


def test_token_is_required_everywhere_but_health_and_sent_to_nodes(tmp_path: Path) -> None:
    node = FakeNode("locked", slots=1, token="s3cret")
    with (
        serve_in_thread(fake_farm_app([node])) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, [f"{farm}/n/0"], token="s3cret")) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        assert client.get("/health").json() == {"status": "ok"}
        assert client.get("/").status_code == 200  # dashboard shell: no data, no token
        assert client.get("/render").status_code == 401
        assert client.get("/metrics").status_code == 401
        assert client.get("/nodes", headers={"Authorization": "Bearer nope"}).status_code == 403
        client.headers["Authorization"] = "Bearer s3cret"
        job_id = client.post("/render", json={"scene": "demo.blend", "frames": "1-4"}).json()["id"]
        assert wait_job(client, job_id)["state"] == "completed"


def test_restart_resumes_without_rendering_collected_frames_again(tmp_path: Path) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.03) for i in range(2)]
    with serve_in_thread(fake_farm_app(nodes)) as farm:
        settings = fast_settings(tmp_path, node_urls(farm, 2))
        with (
            orchestrator_in_thread(settings) as url,
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            job_id = client.post(
                "/render", json={"scene": "demo.blend", "frames": "1-60", "batch_size": 5}
            ).json()["id"]
            wait_until(lambda: client.get(f"/render/{job_id}").json()["frames"]["done"] >= 10)
        collected = {int(p.stem[6:]) for p in (settings.renders_dir / job_id).glob("frame_*")}
        with (
            orchestrator_in_thread(settings) as url,
            httpx.Client(base_url=url, timeout=10) as client,
        ):
            status = wait_job(client, job_id)
        assert status["state"] == "completed" and status["frames"]["done"] == 60
        rendered = Counter(f for n in nodes for f in n.rendered)
        assert all(rendered[f] == 1 for f in collected)
        assert len(list((settings.renders_dir / job_id).glob("frame_*.png"))) == 60


def test_a_100000_frame_job_is_queued_in_capped_batches_and_listed(tmp_path: Path) -> None:
    with (
        orchestrator_in_thread(fast_settings(tmp_path, [])) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        job_id = client.post("/render", json={"scene": "demo.blend", "frames": "1-100000"}).json()[
            "id"
        ]
        status = client.get(f"/render/{job_id}").json()
        assert status["frames"]["total"] == 100_000 and status["state"] == "queued"
        assert len(status["batches"]) == 4000  # capped batch size 25
        assert len(client.get("/render").json()) == 1


def test_the_api_answers_while_the_schedulers_loop_is_busy(tmp_path: Path) -> None:
    """Node traffic runs on the engine's loop, not the server's: a status poll, the job and
    node lists and a registration are answered while that loop is stuck in one callback."""
    app = create_app(fast_settings(tmp_path, []))
    release = threading.Event()
    with (
        serve_in_thread(app) as url,
        httpx.Client(base_url=url, timeout=5) as client,
    ):
        job_id = client.post("/render", json={"scene": "demo.blend", "frames": "1-10"}).json()["id"]
        app.state.farm.link.loop.soon(release.wait, 30)  # blocks the loop thread itself
        try:
            assert client.get(f"/render/{job_id}").json()["state"] == "queued"
            assert [j["id"] for j in client.get("/render").json()] == [job_id]
            node = {"url": "http://127.0.0.1:9/", "slots": 1}
            assert client.post("/nodes/register", json=node).json()["ok"]
            assert [n["url"] for n in client.get("/nodes").json()] == ["http://127.0.0.1:9"]
        finally:
            release.set()
        # and what needs the scheduler works again once its loop is free
        assert client.delete(f"/render/{job_id}").json()["state"] == "cancelled"


def test_scene_failing_everywhere_ends_the_job_failed_instead_of_stalling(tmp_path: Path) -> None:
    frames = set(range(1, 31))
    nodes = [
        FakeNode(f"n{i}", slots=1, seconds_per_frame=0.0, fail_frames=frames) for i in range(3)
    ]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 3))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-30", "batch_size": 2}
        ).json()["id"]
        status = wait_job(client, job_id)
        assert status["state"] == "failed" and status["frames"]["failed"] == 30
        assert all(len(f["nodes"]) == 3 for f in status["failed_frames"])


@pytest.mark.skipif(not ffmpeg_available(), reason="needs ffmpeg")
def test_video_is_encoded_when_asked_for(tmp_path: Path) -> None:
    nodes = [FakeNode("n0", slots=2, seconds_per_frame=0.0)]
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(fast_settings(tmp_path, node_urls(farm, 1))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        job_id = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1-6", "video": True}
        ).json()["id"]
        assert wait_job(client, job_id)["state"] == "completed"
        wait_until(lambda: client.get(f"/render/{job_id}").json()["video"], 30, "video")
        video = client.get(f"/render/{job_id}/video.mp4")
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert b"ftyp" in video.content[:16]


def test_batches_are_cut_to_each_nodes_speed_and_queued_ahead_on_the_node(
    tmp_path: Path,
) -> None:
    """No batch size given: after a first batch of the automatic size, a fast node takes a
    larger share and a slow one a smaller; each node's next batch is sent before its current
    one ends; and still every frame is rendered exactly once."""
    nodes = [
        FakeNode("fast0", slots=1, startup=0.05, seconds_per_frame=0.02),
        FakeNode("fast1", slots=1, startup=0.05, seconds_per_frame=0.02),
        FakeNode("slow", slots=1, startup=0.05, seconds_per_frame=0.08),
    ]
    with farm_of(tmp_path, nodes) as (_farm, client):
        created = client.post("/render", json={"scene": "demo.blend", "frames": "1-240"}).json()
        status = wait_job(client, created["id"])
    assert status["state"] == "completed", status
    rendered = Counter(f for n in nodes for f in n.rendered)
    assert set(rendered) == set(range(1, 241)) and max(rendered.values()) == 1
    batches = status["batches"]
    assert sorted(f for b in batches for f in parse_frame_spec(b["frames"])) == list(range(1, 241))
    sizes = [len(parse_frame_spec(b["frames"])) for b in batches]
    assert max(sizes) > created["batch_size"]  # joined beyond the first, blind size
    fast = min(len(nodes[0].rendered), len(nodes[1].rendered))
    assert len(nodes[2].rendered) < fast / 2  # a quarter of the speed, about a ninth of the work
    by_node: dict[str, list[dict[str, Any]]] = {}
    for b in sorted(batches, key=lambda b: b["started"]):
        by_node.setdefault(b["node"], []).append(b)
    ahead = [
        later for mine in by_node.values() for earlier, later in itertools.pairwise(mine)
        if later["started"] < earlier["finished"]
    ]  # fmt: skip
    assert ahead, by_node  # some node got its next batch while rendering the current one


def test_a_second_job_of_the_scene_starts_with_the_nodes_speeds_known(tmp_path: Path) -> None:
    nodes = [
        FakeNode("fast", slots=1, seconds_per_frame=0.02),
        FakeNode("slow", slots=1, seconds_per_frame=0.1),
    ]
    with farm_of(tmp_path, nodes) as (farm, client):
        first = client.post("/render", json={"scene": "demo.blend", "frames": "1-60"}).json()
        assert wait_job(client, first["id"])["state"] == "completed"
        for node in nodes:
            node.rendered.clear()
        second = client.post("/render", json={"scene": "demo.blend", "frames": "1-60"}).json()
        status = wait_job(client, second["id"])
    assert status["state"] == "completed"
    slow_url = f"{farm}/n/1"
    slow_batches = [b for b in status["batches"] if b["node"] == slow_url]
    # sized from the first job: the slow node's share (1/6, 10 frames) in one go
    assert len(slow_batches) == 1, slow_batches
    assert 5 <= len(nodes[1].rendered) <= 15, nodes[1].rendered


def test_node_speeds_outlive_an_orchestrator_restart(tmp_path: Path) -> None:
    nodes = [
        FakeNode("fast", slots=1, seconds_per_frame=0.02),
        FakeNode("slow", slots=1, seconds_per_frame=0.1),
    ]
    with serve_in_thread(fake_farm_app(nodes)) as farm:
        settings = fast_settings(tmp_path, node_urls(farm, 2))
        for run in ("before", "after"):
            with (
                orchestrator_in_thread(settings) as url,
                httpx.Client(base_url=url, timeout=10) as client,
            ):
                wait_until(
                    lambda: (
                        [n["state"] != "lost" for n in client.get("/nodes").json()] == [True, True]
                    ),
                    what="nodes",
                )
                for node in nodes:
                    node.rendered.clear()
                job = client.post("/render", json={"scene": "demo.blend", "frames": "1-60"}).json()
                status = wait_job(client, job["id"])
                assert status["state"] == "completed", (run, status)
    # After the restart the first batches were cut to the speeds measured before it: the slow
    # node's share (1/6, 10 frames) in one go, as for a second job without a restart.
    slow_batches = [b for b in status["batches"] if b["node"] == f"{farm}/n/1"]
    assert len(slow_batches) == 1, slow_batches
    assert 5 <= len(nodes[1].rendered) <= 15, nodes[1].rendered


def test_a_retried_frame_goes_to_the_node_left_even_when_others_look_faster(
    tmp_path: Path,
) -> None:
    """Batch sizing counts only the slots that may take a batch: frame 3 failed on two nodes
    must still be tried on the third, not left for the (idle, faster) nodes it failed on."""
    nodes = [
        FakeNode(f"n{i}", slots=1, seconds_per_frame=0.01 * (i + 1), fail_frames={3})
        for i in range(3)
    ]
    with farm_of(tmp_path, nodes) as (_farm, client):
        job = client.post("/render", json={"scene": "demo.blend", "frames": "1-4"}).json()
        status = wait_job(client, job["id"], timeout=20)
    assert status["state"] == "failed"
    assert status["frames"] == {"total": 4, "done": 3, "failed": 1, "rendering": 0}
    tried = {b["node"] for b in status["batches"] if b["frames"] == "3"}
    assert len(tried) == 3
