"""How the orchestrator collects frames from fake nodes: a poll's done frames in one frames.tar,
frames left out of it asked for again."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from farm_common.protocol import FINAL_JOB_STATES, frame_name
from orchestrator.nodes.archive import FrameFiles
from orchestrator.nodes.client import NodeClient
from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.orch_helpers import fast_settings, orchestrator_in_thread, wait_job, wait_until


def run_job(
    tmp_path: Path, nodes: list[FakeNode], spec: str, batch_size: int, state: str = "completed"
) -> dict[str, Any]:
    with (
        serve_in_thread(fake_farm_app(nodes)) as farm,
        orchestrator_in_thread(
            fast_settings(tmp_path, [f"{farm}/n/{i}" for i in range(len(nodes))])
        ) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        wait_until(lambda: all(n["state"] != "lost" for n in client.get("/nodes").json()))
        resp = client.post(
            "/render", json={"scene": "demo.blend", "frames": spec, "batch_size": batch_size}
        )
        assert resp.status_code == 202, resp.text
        status = wait_job(client, resp.json()["id"])
        assert status["state"] == state, status
        return status


def collected_files(tmp_path: Path, job_id: str) -> list[str]:
    return sorted(p.name for p in (tmp_path / "orch" / "renders" / job_id).iterdir())


def test_frames_come_in_archives_of_several_frames(tmp_path: Path) -> None:
    nodes = [FakeNode(f"n{i}", slots=1, seconds_per_frame=0.02) for i in range(2)]
    status = run_job(tmp_path, nodes, "1-40", batch_size=10)
    assert collected_files(tmp_path, status["id"]) == [frame_name(f, ".png") for f in range(1, 41)]
    archives = sum(n.archives for n in nodes)
    assert 4 <= archives < 40  # at least one per batch, fewer than one per frame


def test_a_frame_left_out_of_the_archive_is_asked_for_again(tmp_path: Path) -> None:
    node = FakeNode("n0", slots=1, seconds_per_frame=0.01, withhold={5: 2})
    status = run_job(tmp_path, [node], "1-8", batch_size=8)
    assert node.withhold == {5: 0}  # it was left out twice, then served
    assert "frame_00005.png" in collected_files(tmp_path, status["id"])
    assert Counter(node.rendered)[5] == 1  # collected from the same node job, not re-rendered


def test_a_frame_never_served_fails_on_its_node_after_the_node_job_ends(tmp_path: Path) -> None:
    node = FakeNode("n0", slots=1, seconds_per_frame=0.01, withhold={3: 1000})
    status = run_job(tmp_path, [node], "1-4", batch_size=4, state="failed")
    assert status["frames"]["done"] == 3
    (failed,) = status["failed_frames"]
    assert failed["frame"] == 3 and "not served" in failed["error"], failed
    assert Counter(node.rendered)[3] == 3  # the one node tried it three times, then gave up


def test_every_answer_of_a_node_counts_as_a_sign_of_life(tmp_path: Path) -> None:
    node = FakeNode("n0", seconds_per_frame=0.0, named_scenes={"demo.blend"})
    heard: list[str] = []

    async def scenario(url: str) -> None:
        client = NodeClient(None, 2.0, 5.0, on_answer=heard.append)
        try:
            created = await client.submit(url, "demo.blend", "1-2", "PNG")
            assert heard == [url]
            status = await client.status(url, created.id, wait=5.0, since=created.version)
            while status.state not in FINAL_JOB_STATES:
                status = await client.status(url, created.id, wait=5.0, since=status.version)
            # Frames stream in answers read piece by piece: those count as well.
            heard.clear()
            files = FrameFiles(
                {f: tmp_path / frame_name(f, ".png") for f in (1, 2)},
                lambda p: p.with_suffix(".part"),
            )
            await client.download_archive(url, created.id, [1, 2], files)
            assert files.placed == [1, 2] and heard == [url]
        finally:
            await client.aclose()

    with serve_in_thread(fake_farm_app([node])) as farm:
        asyncio.run(scenario(f"{farm}/n/0"))
