"""How the orchestrator collects frames from fake nodes: a poll's done frames in one frames.tar,
frames left out of it asked for again, and frame by frame from nodes without the endpoint."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.nodes.archive import FrameFiles
from orchestrator.nodes.client import (
    ARCHIVE_RECHECK_SECONDS,
    ArchiveUnsupported,
    NodeClient,
    NodeJobGone,
)
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
    assert collected_files(tmp_path, status["id"]) == [f"frame_{f:05d}.png" for f in range(1, 41)]
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


def test_nodes_without_frames_tar_are_collected_from_frame_by_frame(tmp_path: Path) -> None:
    nodes = [
        FakeNode("old", slots=1, seconds_per_frame=0.01, archive=False, withhold={2: 1}),
        FakeNode("new", slots=1, seconds_per_frame=0.01),
    ]
    status = run_job(tmp_path, nodes, "1-30", batch_size=5)
    assert len(collected_files(tmp_path, status["id"])) == 30
    assert nodes[0].rendered and nodes[0].archives == 0
    assert nodes[1].archives > 0
    assert sum(status["nodes"].values()) == 30


def test_client_tells_a_missing_endpoint_from_a_missing_job(tmp_path: Path) -> None:
    old = FakeNode("old", archive=False, seconds_per_frame=0.0)
    new = FakeNode("new", seconds_per_frame=0.0)
    now = [0.0]

    async def scenario(farm: str) -> None:
        client = NodeClient(None, 2.0, 5.0, clock=lambda: now[0])
        files = FrameFiles({1: tmp_path / "frame_00001.png"}, lambda p: p.with_suffix(".part"))
        try:
            for url in (f"{farm}/n/0", f"{farm}/n/1"):
                with pytest.raises(NodeJobGone):
                    await client.download_archive(url, "nosuchjob", [1], files)
            old_url, new_url = f"{farm}/n/0", f"{farm}/n/1"
            job = (await client.submit(old_url, "demo.blend", "1", "PNG")).id
            await asyncio.sleep(0.1)
            with pytest.raises(ArchiveUnsupported):
                await client.download_archive(old_url, job, [1], files)
            assert not client.serves_archives(old_url) and client.serves_archives(new_url)
            now[0] += ARCHIVE_RECHECK_SECONDS
            assert client.serves_archives(old_url)  # asked again later: it may be upgraded
            job = (await client.submit(new_url, "demo.blend", "1", "PNG")).id
            await asyncio.sleep(0.1)
            await client.download_archive(new_url, job, [1], files)
            assert files.placed == [1] and (tmp_path / "frame_00001.png").stat().st_size > 0
        finally:
            await client.aclose()

    with serve_in_thread(fake_farm_app([old, new])) as farm:
        asyncio.run(scenario(farm))


def test_every_answer_of_a_node_counts_as_a_sign_of_life(tmp_path: Path) -> None:
    node = FakeNode("n0", seconds_per_frame=0.0)
    heard: list[str] = []

    async def scenario(url: str) -> None:
        client = NodeClient(None, 2.0, 5.0, on_answer=heard.append)
        try:
            job = (await client.submit(url, "demo.blend", "1-2", "PNG")).id
            assert heard == [url]
            await asyncio.sleep(0.1)
            # Frames stream in answers read piece by piece: those count as well.
            heard.clear()
            files = FrameFiles(
                {f: tmp_path / f"frame_{f:05d}.png" for f in (1, 2)},
                lambda p: p.with_suffix(".part"),
            )
            await client.download_archive(url, job, [1, 2], files)
            assert files.placed == [1, 2] and heard == [url]
            heard.clear()
            assert await client.download(url, job, 1, tmp_path / "again.png") > 0
            assert heard == [url]
        finally:
            await client.aclose()

    with serve_in_thread(fake_farm_app([node])) as farm:
        asyncio.run(scenario(f"{farm}/n/0"))
