"""The `farm` command against real processes: render with downloads, exit codes, `farm up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.integration.farm_procs import FAKE_BLENDER, base_env, blender_processes, farm
from tests.orch_helpers import BLEND
from tests.servers import free_port

FARM = [sys.executable, "-m", "orchestrator.client.cli"]


def run_farm(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FARM, *args],
        cwd=cwd,
        env={**base_env(), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_farm_render_uploads_downloads_every_frame_and_exits_zero(tmp_path: Path) -> None:
    scene = tmp_path / "shot.blend"
    scene.write_bytes(BLEND)
    with farm(tmp_path) as f:
        f.start_orchestrator(token="t0k")
        f.start_node(token="t0k")
        f.start_node(token="t0k")
        result = run_farm(
            ["render", str(scene), "--frames", "1-6,10-20x5", "--out", "out",
             "--orchestrator", f.url],
            cwd=tmp_path,
            FARM_TOKEN="t0k",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        names = sorted(p.name for p in (tmp_path / "out").iterdir())
        expected = [f"frame_{n:05d}.png" for n in (1, 2, 3, 4, 5, 6, 10, 15, 20)]
        assert names == expected
        assert "completed: 9/9 frames" in result.stdout
        assert max(f.rendered().values()) == 1


def test_farm_render_exits_one_and_prints_blenders_error_when_frames_fail(
    tmp_path: Path,
) -> None:
    scene = tmp_path / "shot.blend"
    scene.write_bytes(BLEND)
    with farm(tmp_path) as f:
        f.start_orchestrator()
        for _ in range(3):
            f.start_node(fail="3")
        result = run_farm(
            ["render", str(scene), "--frames", "1-4", "--out", "out", "--orchestrator", f.url],
            cwd=tmp_path,
        )
        assert result.returncode == 1, result.stdout + result.stderr
        assert "CUDA error" in result.stdout
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            "frame_00001.png", "frame_00002.png", "frame_00004.png",
        ]  # fmt: skip


def test_farm_render_says_what_to_fix_for_a_bad_frame_spec(tmp_path: Path) -> None:
    scene = tmp_path / "shot.blend"
    scene.write_bytes(BLEND)
    with farm(tmp_path) as f:
        f.start_orchestrator()
        result = run_farm(
            ["render", str(scene), "--frames", "10-1", "--orchestrator", f.url], cwd=tmp_path
        )
    assert result.returncode == 2
    assert "reversed" in result.stderr


def test_farm_up_starts_a_farm_and_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    port = free_port()
    env = {**base_env(), "FARM_BLENDER": str(FAKE_BLENDER), "FAKE_BLENDER_HANG": "2"}
    (tmp_path / "scenes").mkdir()
    (tmp_path / "scenes" / "demo.blend").write_bytes(BLEND)
    up = subprocess.Popen(
        [*FARM, "up", "--nodes", "2", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    assert up.stdout is not None
    reader = threading.Thread(target=lambda: lines.extend(up.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        token = None
        deadline = time.monotonic() + 60
        while token is None and time.monotonic() < deadline:
            token_file = tmp_path / ".farm" / "token"
            if token_file.is_file() and token_file.read_text().strip():
                token = token_file.read_text().strip()
            time.sleep(0.1)
        assert token, "farm up wrote no token"
        headers = {"Authorization": f"Bearer {token}"}
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers=headers, timeout=5) as client:
            while time.monotonic() < deadline:
                try:
                    if len(client.get("/nodes").json()) == 2:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
            assert len(client.get("/nodes").json()) == 2
            # Up as `farm up` sees it (nodes registered may not have been counted yet).
            while time.monotonic() < deadline and not any("farm up: " in x for x in lines):
                time.sleep(0.1)
            # A hanging Blender on a node: Ctrl-C must still leave nothing behind.
            job = client.post("/render", json={"scene": "demo.blend", "frames": "1-4"}).json()
            while time.monotonic() < deadline and not blender_processes(str(tmp_path)):
                time.sleep(0.1)
            assert blender_processes(str(tmp_path)), f"no Blender started for {job}"
        os.killpg(up.pid, signal.SIGINT)
        up.wait(30)
        reader.join(10)
        out = "".join(lines)
        assert up.returncode == 0, out
        assert "farm up: http://127.0.0.1:" in out
        assert "stopping the farm" in out
        time.sleep(0.5)
        assert blender_processes(str(tmp_path)) == []
    finally:
        if up.poll() is None:
            os.killpg(up.pid, signal.SIGKILL)
            up.wait()
