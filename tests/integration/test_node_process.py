"""The node as a process: SIGTERM leaves no Blender; a restart kills what a crash left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.integration.conftest import (
    FAKE_BLENDER,
    ROOT,
    SCENES,
    StartNode,
    blender_pgid,
    group_alive,
)
from tests.servers import free_port, run_cli


def node_argv(port: int, data_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "render_node",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--scenes-dir",
        str(SCENES),
        "--blender-env",
        "FAKE_BLENDER_*",
        *extra,
    ]


def wait_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return True
        time.sleep(0.02)
    return False


def test_sigterm_to_the_node_leaves_no_blender_behind(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "FARM_BLENDER": str(FAKE_BLENDER), "FAKE_BLENDER_HANG": "1"}
    with run_cli(node_argv(port, tmp_path), port=port, env=env, cwd=ROOT) as server:
        response = httpx.post(server.url + "/jobs", json={"scene": "demo.blend", "frames": "1-3"})
        job_id = response.json()["id"]
        pgid = blender_pgid(tmp_path, job_id)
        assert group_alive(pgid)
        began = time.monotonic()
        code = server.stop(grace=10)
        assert time.monotonic() - began < 5
        # uvicorn re-raises the signal it caught once shutdown is complete.
        assert code in (0, -15), server.output()
        assert not group_alive(pgid), server.output()
        assert "no Blender left running" in server.output()


def test_env_vars_configure_the_node_like_flags(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "FARM_BLENDER": str(FAKE_BLENDER),
        "FARM_TOKEN": "from-env",
        "FARM_SLOTS": "3",
        "FARM_PORT": str(port),
    }
    argv = [sys.executable, "-m", "render_node", "--data-dir", str(tmp_path)]
    with run_cli(argv, port=port, env=env, cwd=ROOT) as server:
        assert httpx.get(server.url + "/info").status_code == 401
        info = httpx.get(server.url + "/info", headers={"Authorization": "Bearer from-env"})
        assert info.json()["slots"] == 3


def test_node_start_kills_blender_left_by_a_previous_run(
    tmp_path: Path, start_node: StartNode
) -> None:
    data_dir = tmp_path / "restarted"
    job_dir = data_dir / "jobs" / "oldjob"
    marker = str(job_dir / "out")
    job_dir.mkdir(parents=True)
    # A stand-in for a Blender whose node died with kill -9: own session, marker on its cmdline.
    orphan = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", marker], start_new_session=True
    )
    try:
        (job_dir / "blender.pid").write_text(json.dumps({"pgid": orphan.pid, "marker": marker}))
        start_node(data_dir=data_dir)
        assert orphan.wait(timeout=5) == -9
        assert not job_dir.exists()
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def test_node_start_spares_a_recycled_pid_that_is_not_its_blender(
    tmp_path: Path, start_node: StartNode
) -> None:
    data_dir = tmp_path / "recycled"
    job_dir = data_dir / "jobs" / "oldjob"
    job_dir.mkdir(parents=True)
    bystander = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True
    )
    try:
        marker = str(job_dir / "out")
        (job_dir / "blender.pid").write_text(json.dumps({"pgid": bystander.pid, "marker": marker}))
        start_node(data_dir=data_dir)
        time.sleep(0.2)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_second_node_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    first, second = free_port(), free_port()
    env = {**os.environ, "FARM_BLENDER": str(FAKE_BLENDER)}
    with run_cli(node_argv(first, tmp_path), port=first, env=env, cwd=ROOT):
        result = subprocess.run(
            node_argv(second, tmp_path), env=env, cwd=ROOT, capture_output=True, timeout=20
        )
        assert result.returncode != 0
        assert b"another render node is using" in result.stdout + result.stderr
