"""What the node lets a .blend do: Freestyle refused by default, a memory limit per Blender, a
clean environment with Blender's user folders inside the job's own folder (fake Blender)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import StartNode


@pytest.fixture
def node_env_dump(start_node: StartNode, tmp_path: Path) -> tuple[StartNode, Path]:
    dump = tmp_path / "blender-env.json"

    def start(env: dict[str, str] | None = None, **overrides: object) -> object:
        return start_node(env={"FAKE_BLENDER_ENV_DUMP": str(dump), **(env or {})}, **overrides)

    return start, dump  # type: ignore[return-value]


def test_a_freestyle_scene_fails_every_frame_saying_how_to_allow_it(
    start_node: StartNode,
) -> None:
    node = start_node(env={"FAKE_BLENDER_FREESTYLE": "1"})
    job = node.wait(node.submit("1-3"))
    assert job["state"] == "failed", job
    for frame in job["frames"]:
        assert frame["state"] == "failed"
        assert "Freestyle" in frame["error"], frame
        assert "--allow-freestyle" in frame["error"], frame
    assert "Freestyle" in job["error"]
    # Said apart from a failure: the node will render no batch of this scene.
    assert "--allow-freestyle" in job["refused"]
    assert not list((node.data_dir / "jobs" / job["id"] / "out").glob("frame_*"))


def test_a_freestyle_scene_renders_on_a_node_that_allows_it(start_node: StartNode) -> None:
    node = start_node(allow_freestyle=True, env={"FAKE_BLENDER_FREESTYLE": "1"})
    job = node.wait(node.submit("1-2"))
    assert job["state"] == "completed", job
    assert "refused" not in job


def test_scenes_without_freestyle_pass_the_check(node_env_dump: tuple[StartNode, Path]) -> None:
    start_node, _ = node_env_dump
    node = start_node()
    assert node.wait(node.submit("1-2"))["state"] == "completed"


def test_blender_past_its_memory_limit_fails_the_frame_naming_the_limit(
    start_node: StartNode,
) -> None:
    node = start_node(memory_limit_mb=300, env={"FAKE_BLENDER_ALLOCATE_MB": "600"})
    job = node.wait(node.submit("1-2"))
    assert job["state"] == "failed", job
    first = job["frames"][0]
    assert first["state"] == "failed"
    assert "out of memory" in first["error"], first
    assert "300 MB (--memory-limit-mb)" in first["error"], first


def test_blender_within_its_memory_limit_renders(start_node: StartNode) -> None:
    node = start_node(memory_limit_mb=2048, env={"FAKE_BLENDER_ALLOCATE_MB": "64"})
    assert node.wait(node.submit("1-2"))["state"] == "completed"


def test_blender_runs_without_our_python_and_with_user_folders_in_the_job(
    node_env_dump: tuple[StartNode, Path],
) -> None:
    start_node, dump = node_env_dump
    node = start_node(env={"PYTHONPATH": "/evil", "PYTHONHOME": "/evil", "FAKE_BLENDER_X": "1"})
    job = node.wait(node.submit("1"))
    assert job["state"] == "completed", job
    env = json.loads(dump.read_text())
    assert "PYTHONPATH" not in env and "PYTHONHOME" not in env
    job_dir = (node.data_dir / "jobs" / job["id"]).resolve()
    for name in (
        "BLENDER_USER_RESOURCES",
        "BLENDER_USER_CONFIG",
        "BLENDER_USER_SCRIPTS",
        "BLENDER_USER_DATAFILES",
        "TMPDIR",
    ):
        assert Path(env[name]).resolve().is_relative_to(job_dir), (name, env[name])
