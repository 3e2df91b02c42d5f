"""A scene writes only inside its job's folder (fake Blender): the scene guard moves File Output
nodes there, and the sandbox below it stops what the guard cannot see (an exploited Blender
writing wherever it likes), while the node's scene store stays intact."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import pwd
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from render_node.sandbox import probe_bwrap
from render_node.scenes import SceneStore
from tests.integration.conftest import SCENES, Node, StartNode, group_alive

DEMO = SCENES / "demo.blend"
BWRAP = probe_bwrap("bwrap")[0] is not None
needs_bwrap = pytest.mark.skipif(not BWRAP, reason=f"no bubblewrap here: {probe_bwrap('bwrap')[1]}")


def upload(node: Node, path: Path = DEMO) -> str:
    data = path.read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    response = node.client.put(f"/scenes/{sha}", content=data)
    assert response.status_code in (200, 201), response.text
    return sha


def job_dir(node: Node, job: dict[str, object]) -> Path:
    return node.data_dir / "jobs" / str(job["id"])


@pytest.mark.parametrize("sandbox", ["none", pytest.param("bwrap", marks=needs_bwrap)])
@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_file_output_node_writes_into_the_job_folder_not_where_it_points(
    start_node: StartNode, tmp_path: Path, sandbox: str, where: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    # `//` is the scene's folder, the node's scene store: tmp_path/a/node/scenes.
    base = f"{outside}/" if where == "absolute" else "//../../../outside/"
    node = start_node(
        sandbox=sandbox, data_dir=tmp_path / "a" / "node", env={"FAKE_BLENDER_FILE_OUTPUT": base}
    )
    job = node.wait(node.submit("1-2", scene=f"sha256:{upload(node)}"))
    assert job["state"] == "completed", job
    assert list(outside.iterdir()) == []
    moved = sorted(p.name for p in (job_dir(node, job) / "passes").rglob("*.png"))
    assert moved == ["escaped_0001.png", "escaped_0002.png"]
    log = node.client.get(f"/jobs/{job['id']}/log").text
    assert "File Output node 'File Output'" in log


@pytest.mark.parametrize(
    "base",
    [
        "//../../orchestrator/farm.sqlite#",  # issue 16's database name, file extension off
        "//",  # the scene store itself: another scene's name filled in by the frame number
    ],
)
def test_a_file_output_aimed_at_the_farms_own_files_lands_in_the_job(
    start_node: StartNode, tmp_path: Path, base: str
) -> None:
    farm = tmp_path / "farm"
    (farm / "orchestrator").mkdir(parents=True)
    database = farm / "orchestrator" / "farm.sqlite1"
    database.write_bytes(b"SQLite format 3\0")
    node = start_node(data_dir=farm / "node-1", env={"FAKE_BLENDER_FILE_OUTPUT": base})
    sha = upload(node)
    store = node.data_dir / "scenes"
    before = {p.name: p.read_bytes() for p in store.iterdir()}
    job = node.wait(node.submit("1", scene=f"sha256:{sha}"))
    assert job["state"] == "completed", job
    assert database.read_bytes() == b"SQLite format 3\0"
    assert {p.name: p.read_bytes() for p in store.iterdir()} == before
    assert list((job_dir(node, job) / "passes").rglob("*.png"))


DEMO_SHA = hashlib.sha256(DEMO.read_bytes()).hexdigest()


def run_exploit(
    start_node: StartNode, tmp_path: Path, sandbox: str
) -> tuple[Node, dict[str, object], dict[str, bytes | None]]:
    """A job whose Blender writes to a file outside, to its own scene in the node's store and
    to another program's data (hidden with --sandbox-hide, as `farm up` hides its own)."""
    (tmp_path / "outside").mkdir()
    (tmp_path / "farm-data").mkdir()
    (tmp_path / "farm-data" / "farm.sqlite").write_bytes(b"db")
    targets = {
        "outside": tmp_path / "outside" / "escaped.png",
        "scene store": tmp_path / "node" / "scenes" / f"{DEMO_SHA}.blend",
        "other data": tmp_path / "farm-data" / "farm.sqlite",
    }
    node = start_node(
        sandbox=sandbox,
        data_dir=tmp_path / "node",
        sandbox_hide=[tmp_path / "farm-data"],
        env={"FAKE_BLENDER_WRITE": ",".join(str(p) for p in targets.values())},
    )
    upload(node)
    job = node.wait(node.submit("1", scene=f"sha256:{DEMO_SHA}"))
    after = {name: p.read_bytes() if p.exists() else None for name, p in targets.items()}
    return node, job, after


@needs_bwrap
def test_under_bwrap_an_exploited_blender_writes_nothing_outside_its_job(
    start_node: StartNode, tmp_path: Path
) -> None:
    node, job, after = run_exploit(start_node, tmp_path, "bwrap")
    assert job["state"] == "completed", job  # the frame itself still reaches the job
    assert after == {"outside": None, "scene store": DEMO.read_bytes(), "other data": b"db"}
    log = node.client.get(f"/jobs/{job['id']}/log").text
    assert log.count("fake: could not write") == 3, log  # hidden folders are read-only too


def test_without_a_sandbox_the_same_exploit_does_write(
    start_node: StartNode, tmp_path: Path
) -> None:
    """The control: what the bwrap test proves is the sandbox's doing."""
    _, _, after = run_exploit(start_node, tmp_path, "none")
    assert after["outside"] == b"written by the scene"
    assert after["other data"] == b"written by the scene"
    assert after["scene store"] == b"written by the scene"


def test_a_stored_scene_changed_on_disk_is_deleted_and_asked_for_again(
    start_node: StartNode,
) -> None:
    node = start_node()
    sha = upload(node)
    stored = node.data_dir / "scenes" / f"{sha}.blend"
    assert node.client.head(f"/scenes/{sha}").status_code == 200
    # Overwritten, as a File Output aimed at the store did (a same-size change is caught by
    # the change time, whose tick may be coarser than this test's few milliseconds).
    stored.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert node.client.head(f"/scenes/{sha}").status_code == 404
    assert not stored.exists()
    refused = node.client.post("/jobs", json={"scene": f"sha256:{sha}", "frames": "1"})
    assert refused.status_code == 404, refused.text
    assert f"PUT /scenes/{sha}" in refused.json()["detail"]
    upload(node)  # sent again, it renders
    assert node.wait(node.submit("1", scene=f"sha256:{sha}"))["state"] == "completed"


def test_a_stored_scene_is_hashed_again_by_a_restarted_node(tmp_path: Path) -> None:
    """A store that did not see the upload (a restarted node) hashes a scene before use."""
    store = SceneStore(tmp_path / "scenes", SCENES, 1 << 30)
    asyncio.run(store.save(DEMO_SHA, chunks(DEMO.read_bytes())))
    assert asyncio.run(store.intact(DEMO_SHA)) is not None
    stored = tmp_path / "scenes" / f"{DEMO_SHA}.blend"
    stored.write_bytes(b"BLENDER-v304 not the uploaded scene")
    restarted = SceneStore(tmp_path / "scenes", SCENES, 1 << 30)
    assert asyncio.run(restarted.intact(DEMO_SHA)) is None
    assert not stored.exists()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


def test_blenders_environment_holds_no_token(start_node: StartNode, tmp_path: Path) -> None:
    dump = tmp_path / "env.json"
    node = start_node(
        token="s3cret-farm-token",
        env={"FARM_TOKEN": "s3cret-farm-token", "FAKE_BLENDER_ENV_DUMP": str(dump)},
    )
    assert node.wait(node.submit("1"))["state"] == "completed"
    env = json.loads(dump.read_text())
    assert "FARM_TOKEN" not in env
    assert not [k for k, v in env.items() if "s3cret-farm-token" in v]
    assert not [k for k in env if k.startswith("FARM_")]


def test_info_says_which_sandbox_holds_blender(start_node: StartNode) -> None:
    assert start_node(sandbox="none").client.get("/info").json()["sandbox"] == "none"


@needs_bwrap
def test_info_says_bwrap(start_node: StartNode) -> None:
    assert start_node(sandbox="bwrap").client.get("/info").json()["sandbox"] == "bwrap"


@needs_bwrap
def test_under_bwrap_a_crash_and_a_cancel_behave_as_without(start_node: StartNode) -> None:
    node = start_node(sandbox="bwrap", env={"FAKE_BLENDER_CRASH": "2"})
    job = node.wait(node.submit("1-3"))
    frames = {f["frame"]: f for f in job["frames"]}
    assert frames[1]["state"] == "done"
    assert "SIGSEGV" in frames[2]["error"], frames[2]
    hung = start_node(sandbox="bwrap", env={"FAKE_BLENDER_HANG": "1"})
    job_id = hung.submit("1-2")
    pgid = hung.blender_pgid(job_id)
    cancelled = hung.client.delete(f"/jobs/{job_id}")  # answers once Blender is gone
    assert cancelled.json()["state"] == "cancelled", cancelled.text
    assert not group_alive(pgid)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can reach (pytest's tmp_path is private to its user)."""
    path = Path(tempfile.mkdtemp(prefix="farm-user-sandbox-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="running Blender as another user needs root")
def test_user_sandbox_runs_blender_as_that_user_who_cannot_touch_the_node(
    start_node: StartNode, shared_dir: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    drop = shared_dir / "drop"  # a folder anyone may write, for the environment dump
    drop.mkdir(mode=0o777)
    drop.chmod(0o777)
    stored = shared_dir / "node" / "scenes" / f"{DEMO_SHA}.blend"
    node = start_node(
        sandbox="user",
        sandbox_user="nobody",
        data_dir=shared_dir / "node",
        env={
            "FAKE_BLENDER_ENV_DUMP": str(drop / "env.json"),
            "FAKE_BLENDER_WRITE": f"{stored},{shared_dir / 'node' / 'planted'}",
        },
    )
    assert node.client.get("/info").json()["sandbox"] == "user nobody"
    upload(node)
    job = node.wait(node.submit("1", scene=f"sha256:{DEMO_SHA}"))
    assert job["state"] == "completed", job
    assert (job_dir(node, job) / "out").stat().st_uid == nobody.pw_uid
    assert stored.read_bytes() == DEMO.read_bytes()
    assert not (shared_dir / "node" / "planted").exists()
    log = node.client.get(f"/jobs/{job['id']}/log").text
    assert log.count("fake: could not write") == 2, log
    assert json.loads((drop / "env.json").read_text())["USER"] == "nobody"
