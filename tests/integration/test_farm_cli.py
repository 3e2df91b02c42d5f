"""The `farm` command against real processes: render with downloads, exit codes, `farm up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx

from farm_common.protocol import frame_name
from tests.integration.farm_procs import FAKE_BLENDER, base_env, blender_processes, farm
from tests.orch_helpers import BLEND, wait_until
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
        expected = [frame_name(n, ".png") for n in (1, 2, 3, 4, 5, 6, 10, 15, 20)]
        assert names == expected
        assert "completed: 9/9 frames" in result.stdout
        assert max(f.rendered().values()) == 1

        # The frames as a video, made on the farm and saved where asked.
        job_id = result.stdout.split("job ", 1)[1].split()[0]
        result = run_farm(
            ["video", job_id, "--fps", "6", "--out", "clip.mp4", "--orchestrator", f.url],
            cwd=tmp_path,
            FARM_TOKEN="t0k",
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "video saved as clip.mp4" in result.stdout
        assert (tmp_path / "clip.mp4").read_bytes()[4:8] == b"ftyp"


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
    env = {
        **base_env(),
        "FARM_BLENDER": str(FAKE_BLENDER),
        "FARM_BLENDER_ENV": "FAKE_BLENDER_*",  # the nodes pass it on to their Blender
        "FAKE_BLENDER_HANG": "2",
    }
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
        token_file = tmp_path / ".farm" / "token"
        wait_until(lambda: token_file.is_file() and token_file.read_text().strip() != "",
                   timeout=60, what="farm up's token")  # fmt: skip
        headers = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, headers=headers, timeout=5) as client:

            def nodes() -> int:
                try:
                    return len(client.get("/nodes").json())
                except httpx.HTTPError:
                    return 0

            wait_until(lambda: nodes() == 2, timeout=60, what="two registered nodes")
            # Up as `farm up` sees it (nodes registered may not have been counted yet).
            wait_until(lambda: any("farm up: " in x for x in lines), what="'farm up:' line")
            # A hanging Blender on a node: Ctrl-C must still leave nothing behind.
            client.post("/render", json={"scene": "demo.blend", "frames": "1-4"}).json()
            wait_until(lambda: bool(blender_processes(str(tmp_path))), what="a Blender running")
        os.killpg(up.pid, signal.SIGINT)
        up.wait(30)
        reader.join(10)
        out = "".join(lines)
        assert up.returncode == 0, out
        assert "farm up: http://127.0.0.1:" in out
        assert "stopping the farm" in out
        wait_until(lambda: blender_processes(str(tmp_path)) == [], timeout=2, what="no Blender")
    finally:
        if up.poll() is None:
            # Ctrl-C first: `farm up` stops its orchestrator and nodes, which run in process
            # groups of their own that a SIGKILL of `farm up` would leave running.
            os.killpg(up.pid, signal.SIGINT)
            try:
                up.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(up.pid, signal.SIGKILL)
                up.wait()
