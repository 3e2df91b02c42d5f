"""Frames split in tiles on a farm of real processes (fake Blender): regions dispatched like
batches, stitched into the frame, counted per frame, failed, lost and cancelled like frames."""

from __future__ import annotations

import io
import os
import shutil
import signal
import zipfile
from pathlib import Path

import OpenImageIO as oiio

from farm_common.protocol import frame_name
from tests.fake_blender import png_bytes
from tests.integration.conftest import SCENES
from tests.integration.farm_procs import Farm, blender_processes, farm, submit
from tests.orch_helpers import wait_job, wait_until

SIZE = (101, 77)  # uneven: regions of 3x3 are 33/34 pixels wide, 25/26 high


def whole_frame(tmp_path: Path, frame: int) -> Path:
    """The frame as a one-node render of it writes it (no border)."""
    path = tmp_path / f"whole_{frame}.png"
    path.write_bytes(png_bytes(*SIZE, frame))
    return path


def same_pixels(a: Path, b: Path) -> bool:
    one, two = oiio.ImageBuf(str(a)), oiio.ImageBuf(str(b))
    assert (one.spec().width, one.spec().height) == (two.spec().width, two.spec().height)
    return oiio.ImageBufAlgo.compare(one, two, 0, 0).nfail == 0


def start(f: Farm, nodes: int, **fake: str) -> None:
    f.start_orchestrator()
    for _ in range(nodes):
        f.start_node(SIZE=f"{SIZE[0]}x{SIZE[1]}", **fake)
    f.wait_nodes(f.client(), nodes)


def test_a_still_in_nine_tiles_is_stitched_equal_to_the_whole_frame(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        start(f, 3, SECONDS="0.2")
        client = f.client()
        job_id = submit(client, frames="7", tiles=9)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert status["frames"] == {"total": 1, "done": 1, "failed": 0, "rendering": 0}
        assert status["tiles"] == {
            "per_frame": 9, "grid": [3, 3], "margin": 0, "total": 9, "done": 9, "failed": 0,
            "rendering": 0,
        }  # fmt: skip
        assert f.outputs(job_id) == [frame_name(7, ".png")]  # the regions' folder is gone
        out = tmp_path / "orch" / "renders" / job_id / frame_name(7, ".png")
        assert same_pixels(out, whole_frame(tmp_path, 7))
        assert f.rendered()[7] == 9  # each region once
        assert len(status["nodes"]) >= 2  # the regions spread over the farm
        assert sorted(b["tile"] for b in status["batches"]) == list(range(9))
        assert all(b["frames"] == "7" for b in status["batches"])
        (entry,) = client.get(f"/render/{job_id}/frames").json()["frames"]
        assert entry["state"] == "done" and entry["tiles"] == entry["tiles_done"] == 9
        got = client.get(f"/render/{job_id}/frames/7")
        assert got.status_code == 200 and got.content == out.read_bytes()


def test_every_frame_of_a_range_is_split_and_stitched(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        start(f, 2)
        client = f.client()
        job_id = submit(client, frames="1-5", tiles=4, format="JPEG", video=False)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert status["frames"]["done"] == 5 and status["tiles"]["done"] == 20
        assert f.outputs(job_id) == [frame_name(n, ".jpg") for n in range(1, 6)]
        for n in range(1, 6):
            path = tmp_path / "orch" / "renders" / job_id / frame_name(n, ".jpg")
            image = oiio.ImageBuf(str(path))
            assert image.spec().format == "uint8" and image.spec().nchannels == 3
            assert (image.spec().width, image.spec().height) == SIZE
            # Encoded once, from exact regions: the whole frame's JPEG (at Blender's default
            # quality, the scene's own being unreadable here).
            whole = oiio.ImageBuf(str(whole_frame(tmp_path, n)))
            whole.specmod().attribute("Compression", "jpeg:90")
            assert whole.write(str(tmp_path / "whole.jpg"))
            assert same_pixels(path, tmp_path / "whole.jpg")
        names = zipfile.ZipFile(io.BytesIO(client.get(f"/render/{job_id}/frames.zip").content))
        assert names.namelist() == [frame_name(n, ".jpg") for n in range(1, 6)]
        framemap = client.get(f"/render/{job_id}/framemap").json()
        assert framemap["states"] == "ddddd"


def test_regions_rendered_with_a_margin_are_cut_back_to_the_whole_frame(tmp_path: Path) -> None:
    """The margin's pixel arithmetic against the stand-in, which crops as Blender does
    (float32 borders); the size comes from a real scene file, as the stitcher needs it."""
    with farm(tmp_path) as f:
        shutil.copy(SCENES / "demo.blend", f.scenes / "real.blend")  # 320 x 240
        f.start_orchestrator()
        for _ in range(2):
            f.start_node(SIZE="320x240")
        client = f.client()
        f.wait_nodes(client, 2)
        job_id = submit(client, scene="real.blend", frames="2", tiles=6, tile_margin=13)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        assert status["tiles"]["margin"] == 13
        whole = tmp_path / "whole.png"
        whole.write_bytes(png_bytes(320, 240, 2))
        assert same_pixels(tmp_path / "orch" / "renders" / job_id / frame_name(2, ".png"), whole)
        # Without the file's size there is no margin: the stand-in scene has none to read.
        resp = client.post(
            "/render", json={"scene": "demo.blend", "frames": "1", "tiles": 4, "tile_margin": 8}
        )
        assert resp.status_code == 400 and "need the scene's resolution" in resp.text


def test_a_region_failing_on_three_nodes_fails_its_frame_with_blenders_error(
    tmp_path: Path,
) -> None:
    with farm(tmp_path) as f:
        start(f, 3, FAIL_AT="0,0")  # the top-left region of every frame fails
        client = f.client()
        job_id = submit(client, frames="1-2", tiles=4)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "failed", status
        assert status["frames"] == {"total": 2, "done": 0, "failed": 2, "rendering": 0}
        assert status["tiles"]["done"] == 6 and status["tiles"]["failed"] == 2
        first = status["failed_frames"][0]
        assert first["tile"] == 0 and "CUDA error" in first["error"]
        assert sorted(first["nodes"]) == sorted(n.url for n in f.nodes)
        assert "frame 1 region 0" in status["error"]
        assert f.outputs(job_id) == ["tiles"]  # regions kept, no frame made of them
        frames = client.get(f"/render/{job_id}/frames").json()["frames"]
        assert [(e["state"], e["tiles_done"]) for e in frames] == [("failed", 3), ("failed", 3)]
        assert "region 0: " in frames[0]["error"]
        assert client.get(f"/render/{job_id}/frames/1").status_code == 404


def test_a_node_lost_mid_tile_gives_its_regions_back(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        start(f, 3, SECONDS="0.4")
        client = f.client()
        job_id = submit(client, frames="3", tiles=16)
        wait_until(lambda: len(f.rendered_by(0)) >= 1, 30, "node 0 rendering")
        os.killpg(f.nodes[0].process.pid, signal.SIGKILL)
        status = wait_job(client, job_id, timeout=60)
        assert status["state"] == "completed", status
        out = tmp_path / "orch" / "renders" / job_id / frame_name(3, ".png")
        assert same_pixels(out, whole_frame(tmp_path, 3))


def test_cancel_stops_every_region(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        start(f, 2, SECONDS="30")
        client = f.client()
        job_id = submit(client, frames="1", tiles=16)
        wait_until(lambda: len(blender_processes(str(tmp_path))) >= 2, 30, "regions rendering")
        assert client.delete(f"/render/{job_id}").json()["state"] == "cancelled"
        wait_until(lambda: not blender_processes(str(tmp_path)), 10, "every Blender stopped")
        status = client.get(f"/render/{job_id}").json()
        assert status["tiles"]["done"] == 0 and status["frames"]["done"] == 0


def test_a_split_the_farm_cannot_stitch_is_refused_saying_why(tmp_path: Path) -> None:
    refused = [
        ({"frames": "1", "tiles": 4, "format": "HDR"}, 400, "stitched in PNG, JPEG, TIFF"),
        ({"frames": "1-1000", "tiles": 256}, 400, "256000 regions"),
        ({"frames": "1", "tiles": 257}, 422, "less than or equal to 256"),
        ({"frames": "1", "tiles": 0}, 422, "greater than or equal to 1"),
    ]
    with farm(tmp_path) as f:
        f.start_orchestrator()
        client = f.client()
        for body, status, says in refused:
            resp = client.post("/render", json={"scene": "demo.blend", **body})
            assert resp.status_code == status, resp.text
            assert says in resp.text


def test_a_restarted_orchestrator_keeps_the_regions_it_collected(tmp_path: Path) -> None:
    with farm(tmp_path) as f:
        first = f.start_orchestrator()
        for _ in range(2):
            f.start_node(SIZE=f"{SIZE[0]}x{SIZE[1]}", SECONDS="0.15")
        client = f.client()
        f.wait_nodes(client, 2)
        job_id = submit(client, frames="1-12", tiles=4, batch_size=1)
        wait_until(
            lambda: client.get(f"/render/{job_id}").json()["tiles"]["done"] >= 12, 60, "regions"
        )
        collected = client.get(f"/render/{job_id}").json()["tiles"]["done"]
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(5)
        before = sum(f.rendered().values())
        f.start_orchestrator()
        status = wait_job(client, job_id, timeout=90)
        assert status["state"] == "completed", status
        assert f.outputs(job_id) == [frame_name(n, ".png") for n in range(1, 13)]
        for n in (1, 12):
            path = tmp_path / "orch" / "renders" / job_id / frame_name(n, ".png")
            assert same_pixels(path, whole_frame(tmp_path, n))
        # Only what was not collected is rendered again: the regions of the 48 not in, those
        # rendering at the kill (two slots), and the last region of a frame whose regions were
        # all in but not yet stitched (rare: the kill between the two).
        again = sum(f.rendered().values()) - before
        assert again <= 48 - collected + 2 + 2, (again, collected)
