"""The whole path with the real Blender: upload scenes/demo.blend, render 3 frames on 2 nodes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.integration.farm_procs import farm
from tests.orch_helpers import wait_job

DEMO = Path(__file__).resolve().parents[2] / "scenes" / "demo.blend"


@pytest.mark.blender
@pytest.mark.skipif(shutil.which("blender") is None, reason="needs Blender on PATH")
def test_real_blender_renders_uploaded_demo_scene_on_two_nodes(tmp_path: Path) -> None:
    blender = shutil.which("blender")
    assert blender
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(2):
            f.start_node(blender=blender)
        client = f.client()
        f.wait_nodes(client, 2, timeout=60)
        with DEMO.open("rb") as fh:
            up = client.post("/scenes", files={"file": ("demo.blend", fh)}, timeout=60)
        assert up.status_code == 201, up.text
        resp = client.post("/render", json={"scene": up.json()["scene"], "frames": "1-3"})
        assert resp.status_code == 202, resp.text
        status = wait_job(client, resp.json()["id"], timeout=240)
        assert status["state"] == "completed", status
        for frame in (1, 2, 3):
            image = client.get(f"/render/{status['id']}/frames/{frame}")
            assert image.status_code == 200 and image.content.startswith(b"\x89PNG")
            assert len(image.content) > 1000
        assert all("." in v for v in status["blender_versions"])
