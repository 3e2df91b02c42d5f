"""Packed shots through the orchestrator, with fake nodes: the file store's HTTP face (HEAD,
PUT, missing), jobs naming a manifest, and each file pushed to each node once."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_node import FakeNode
from tests.integration.test_orchestrator_fake_nodes import farm_of
from tests.orch_helpers import BLEND, wait_job


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


SHOT = {
    "shots/010/shot.blend": BLEND,
    "lib/props.blend": BLEND + b"library",
    "tex/checker.png": b"\x89PNG checker",
    "tex/seq/glow_0001.png": b"\x89PNG glow",
}


def manifest(files: dict[str, bytes] = SHOT) -> dict[str, Any]:
    return {"main": "shots/010/shot.blend", "files": {p: sha(d) for p, d in files.items()}}


def upload(client: httpx.Client, files: dict[str, bytes] = SHOT) -> int:
    """Send the files the farm lacks, as `farm render` does; returns how many were sent."""
    wanted = sorted({sha(d) for d in files.values()})
    missing = client.post("/files/missing", json={"files": wanted}).json()["missing"]
    by_sha = {sha(d): d for d in files.values()}
    for digest in missing:
        assert client.put(f"/files/{digest}", content=by_sha[digest]).status_code == 201
    return len(missing)


def test_the_file_store_answers_head_put_and_missing(tmp_path: Path) -> None:
    with farm_of(tmp_path, [FakeNode("n0")]) as (_, client):
        data = b"a texture"
        assert client.head(f"/files/{sha(data)}").status_code == 404
        first = client.put(f"/files/{sha(data)}", content=data)
        assert first.status_code == 201 and first.json() == {
            "sha256": sha(data), "size": len(data), "new": True,
        }  # fmt: skip
        again = client.put(f"/files/{sha(data)}", content=data)  # idempotent
        assert again.status_code == 201 and again.json()["new"] is False
        assert client.head(f"/files/{sha(data)}").status_code == 200
        other = sha(b"other")
        assert client.post("/files/missing", json={"files": [sha(data), other]}).json() == {
            "missing": [other]
        }
        wrong = client.put(f"/files/{sha(b'promised')}", content=b"sent")
        assert wrong.status_code == 400 and "sha256" in wrong.json()["detail"]
        assert client.head(f"/files/{sha(b'promised')}").status_code == 404
        assert client.put("/files/not-a-hash", content=b"x").status_code in (400, 422)


def test_a_file_over_the_upload_limit_is_refused(tmp_path: Path) -> None:
    from orchestrator.api.app import create_app
    from tests.orch_helpers import fast_settings
    from tests.servers import serve_app

    big = b"x" * (1024 * 1024 + 1)
    with (
        serve_app(create_app(fast_settings(tmp_path, [], max_upload_mb=1))) as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        response = client.put(f"/files/{sha(big)}", content=big)
        assert response.status_code == 413
        assert "--max-upload-mb" in response.json()["detail"]
        assert client.head(f"/files/{sha(big)}").status_code == 404


def test_a_packed_shot_renders_and_each_node_is_sent_each_file_once(tmp_path: Path) -> None:
    nodes = [FakeNode("n0", slots=1), FakeNode("n1", slots=1)]
    with farm_of(tmp_path, nodes) as (_, client):
        assert upload(client) == 4
        created = client.post(
            "/render", json={"manifest": manifest(), "frames": "1-8", "batch_size": 1}
        )
        assert created.status_code == 202, created.text
        job = wait_job(client, created.json()["id"])
        assert job["state"] == "completed", job
        assert job["scene"] == "shots/010/shot.blend"
        assert job["assets"] == {"files": 4, "bytes": sum(len(d) for d in SHOT.values())}
        for node in nodes:
            assert node.manifests and all(m == manifest()["files"] for m in node.manifests)
            assert set(node.files) == {sha(d) for d in SHOT.values()}
        assert sum(n.file_puts for n in nodes) <= 8  # each file once to each node

        # The same shot again: the farm and its nodes hold every file.
        assert upload(client) == 0
        puts = sum(n.file_puts for n in nodes)
        second = client.post("/render", json={"manifest": manifest(), "frames": "9-12"})
        assert wait_job(client, second.json()["id"])["state"] == "completed"
        assert sum(n.file_puts for n in nodes) == puts

        # One texture changed: that texture alone goes to the farm, and on to the nodes.
        changed = {**SHOT, "tex/checker.png": b"\x89PNG checker, flipped"}
        assert upload(client, changed) == 1
        third = client.post("/render", json={"manifest": manifest(changed), "frames": "1-2"})
        assert wait_job(client, third.json()["id"])["state"] == "completed"
        assert sum(n.file_puts for n in nodes) - puts <= 2


def test_a_manifest_naming_files_the_farm_lacks_is_refused_naming_them(tmp_path: Path) -> None:
    with farm_of(tmp_path, [FakeNode("n0")]) as (_, client):
        upload(client, {"shots/010/shot.blend": BLEND})
        response = client.post("/render", json={"manifest": manifest(), "frames": "1"})
        assert response.status_code == 409
        detail = response.json()["detail"]
        assert "3 file(s)" in detail and "tex/checker.png" in detail and "PUT /files" in detail


@pytest.mark.parametrize(
    ("files", "main"),
    [
        ({"../escape.blend": BLEND}, "../escape.blend"),
        ({"/etc/shot.blend": BLEND}, "/etc/shot.blend"),
        ({"shot.blend": BLEND, "tex/../../x.png": b"x"}, "shot.blend"),
        ({"shot.blend": BLEND}, "other.blend"),
    ],
)
def test_a_manifest_with_paths_outside_its_tree_is_refused(
    tmp_path: Path, files: dict[str, bytes], main: str
) -> None:
    body = {"manifest": {"main": main, "files": {p: sha(d) for p, d in files.items()}}}
    with farm_of(tmp_path, [FakeNode("n0")]) as (_, client):
        response = client.post("/render", json={**body, "frames": "1"})
        assert response.status_code == 422, response.text


def test_a_job_names_a_scene_or_a_manifest_not_both_nor_neither(tmp_path: Path) -> None:
    with farm_of(tmp_path, [FakeNode("n0")]) as (_, client):
        both = client.post(
            "/render", json={"scene": "demo.blend", "manifest": manifest(), "frames": "1"}
        )
        neither = client.post("/render", json={"frames": "1"})
        assert both.status_code == 422 and neither.status_code == 422
        assert "either" in both.text


def test_a_named_scene_renders_in_place_on_a_node_that_holds_it(tmp_path: Path) -> None:
    shared = FakeNode("shared", named_scenes={"demo.blend"})
    apart = FakeNode("apart")
    with farm_of(tmp_path, [shared, apart]) as (_, client):
        job = client.post("/render", json={"scene": "demo.blend", "frames": "1-6", "batch_size": 1})
        assert wait_job(client, job.json()["id"])["state"] == "completed"
    assert shared.batches and shared.scene_puts == 0  # read from its own scenes folder
    assert apart.batches and apart.scene_puts == 1  # sent the .blend alone, once
