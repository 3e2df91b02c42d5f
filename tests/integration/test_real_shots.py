"""Real Blender, a real shot: scenes/shot links a library (with its own texture), reads textures
by relative path, an image sequence and an Alembic cache. `farm render` packs it; a node that
cannot see the project folder (a private mount hides it) renders it through the farm, frame
for frame what Blender renders in place; what the farm holds is not sent again; a missing file
is refused at submit and fails the frames on the node."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageChops

from tests.integration.farm_procs import Farm, base_env, farm
from tests.orch_helpers import wait_job
from tests.servers import free_port, run_cli

pytestmark = pytest.mark.blender

BLENDER = shutil.which("blender")
SHOT = Path(__file__).resolve().parents[2] / "scenes" / "shot"
MAIN = "shots/010/shot.blend"


def farm_cli(f: Farm, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**base_env(), "FARM_ORCHESTRATOR": f.url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.client.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def sent(output: str) -> tuple[int, float]:
    match = re.search(r"sending (\d+) files, ([\d.]+) MB", output)
    assert match, output
    return int(match.group(1)), float(match.group(2))


@contextlib.contextmanager
def hidden_node(f: Farm, hide: Path) -> Iterator[str]:
    """A render node with real Blender for which `hide` is an empty folder: a private mount
    namespace with a tmpfs over it (root only), so neither it nor its Blender can read it."""
    port = free_port()
    node = [
        sys.executable, "-m", "render_node", "--port", str(port),
        "--data-dir", str(f.root / "node-hidden"), "--scenes-dir", str(f.root / "node-scenes"),
        "--blender", str(BLENDER), "--threads", "2", "--heartbeat-seconds", "1",
        "--orchestrator", f.url, "--advertise-url", f"http://127.0.0.1:{port}",
    ]  # fmt: skip
    script = f"mount -t tmpfs none {hide} && exec " + " ".join(node)
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]
    with run_cli(argv, port=port, env=base_env(), cwd=f.root, startup_timeout=60):
        yield f"http://127.0.0.1:{port}"


def wait_nodes(f: Farm, count: int) -> None:
    with httpx.Client(base_url=f.url, timeout=10) as client:
        f.wait_nodes(client, count)


def render_locally(blend: Path, out: Path, frames: str) -> None:
    assert BLENDER is not None
    subprocess.run(
        [BLENDER, "-b", str(blend), "-o", str(out / "frame_#####"), "-t", "2", "-f", frames],
        check=True, capture_output=True, timeout=600,
    )  # fmt: skip


def same_pixels(a: Path, b: Path) -> bool:
    with Image.open(a) as left, Image.open(b) as right:
        if left.size != right.size or left.mode != right.mode:
            return False
        return ImageChops.difference(left.convert("RGBA"), right.convert("RGBA")).getbbox() is None


@pytest.fixture
def project(tmp_path: Path) -> Path:
    if BLENDER is None:
        pytest.skip("no blender on PATH")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding the project from a node takes root and unshare")
    target = tmp_path / "project"
    shutil.copytree(SHOT, target)
    return target


def test_a_packed_shot_renders_on_a_node_that_cannot_see_it_as_blender_does_in_place(
    tmp_path: Path, project: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    local = tmp_path / "local"
    render_locally(project / MAIN, local, "1,4")
    (tmp_path / "farm").mkdir()
    with farm(tmp_path / "farm") as f:
        f.start_orchestrator()
        with hidden_node(f, project):
            wait_nodes(f, 1)
            first = farm_cli(f, work, "render", str(project / MAIN), "--frames", "1,4",
                             "--out", str(work / "frames"))  # fmt: skip
            assert first.returncode == 0, first.stdout + first.stderr
            files, mb = sent(first.stdout)
            assert files >= 7 and mb > 0  # the shot, its library, textures, sequence, cache
            for frame in (1, 4):
                name = f"frame_{frame:05d}.png"
                assert same_pixels(work / "frames" / name, local / name), name

            # The same shot again: nothing is sent.
            again = farm_cli(f, work, "render", str(project / MAIN), "--frames", "2",
                             "--no-download")  # fmt: skip
            assert again.returncode == 0, again.stdout + again.stderr
            assert sent(again.stdout) == (0, 0.0)

            # One texture changed: that texture alone is sent.
            checker = project / "tex" / "checker.png"
            with Image.open(checker) as image:
                image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(checker)
            changed = farm_cli(f, work, "render", str(project / MAIN), "--frames", "3",
                               "--no-download")  # fmt: skip
            assert changed.returncode == 0, changed.stdout + changed.stderr
            files, mb = sent(changed.stdout)
            assert files == 1 and mb <= checker.stat().st_size / 1e6 + 0.05

            # A file of the image sequence gone: BAT packs the others, and on the node only
            # the frame that reads it fails, naming it.
            (project / "tex" / "seq" / "glow_0003.png").unlink()
            gap = farm_cli(f, work, "render", str(project / MAIN), "--frames", "2-4",
                           "--no-download")  # fmt: skip
            assert gap.returncode == 1, gap.stdout + gap.stderr
            with httpx.Client(base_url=f.url, timeout=10) as client:
                job = client.get("/render").json()[0]
                failed = client.get(f"/render/{job['id']}").json()["failed_frames"]
            assert [item["frame"] for item in failed] == [3]
            assert "missing image" in failed[0]["error"] and "glow_0003.png" in failed[0]["error"]


def test_a_shot_with_a_missing_file_is_refused_at_submit_naming_it(
    tmp_path: Path, project: Path
) -> None:
    (project / "tex" / "checker.png").unlink()
    (project / "lib" / "props.blend").unlink()
    (tmp_path / "farm").mkdir()
    with farm(tmp_path / "farm") as f:
        f.start_orchestrator()
        result = farm_cli(f, tmp_path, "render", str(project / MAIN), "--frames", "1")
    assert result.returncode == 2
    assert "checker.png" in result.stderr and "props.blend" in result.stderr
    assert "--allow-missing" in result.stderr


def test_a_scene_sent_alone_without_its_library_fails_on_the_node_naming_it(
    tmp_path: Path, project: Path
) -> None:
    (tmp_path / "farm").mkdir()
    with farm(tmp_path / "farm") as f:
        f.start_orchestrator()
        with hidden_node(f, project):
            wait_nodes(f, 1)
            with httpx.Client(base_url=f.url, timeout=30) as client:
                blend = (project / MAIN).read_bytes()
                scene = client.post("/scenes", files={"file": ("shot.blend", blend)}).json()
                created = client.post("/render", json={"scene": scene["scene"], "frames": "1"})
                assert created.status_code == 202, created.text
                job_id = created.json()["id"]
                job = wait_job(client, job_id, timeout=180)
    assert job["state"] == "failed"
    error = job["failed_frames"][0]["error"]
    assert "missing library" in error and "props.blend" in error


def test_without_a_format_the_scenes_own_output_settings_come_back(tmp_path: Path) -> None:
    """An OpenEXR multilayer scene (32-bit float, a Z pass) comes back as such, not as PNG."""
    if BLENDER is None:
        pytest.skip("no blender on PATH")
    scene = tmp_path / "passes.blend"
    make = f"""
import bpy
s = bpy.context.scene
s.render.engine = 'CYCLES'
s.cycles.samples = 1
s.cycles.use_denoising = False
s.view_layers[0].cycles.use_denoising = False
s.cycles.device = 'CPU'
s.render.resolution_x, s.render.resolution_y, s.render.resolution_percentage = 32, 24, 100
s.render.image_settings.file_format = 'OPEN_EXR_MULTILAYER'
s.render.image_settings.color_depth = '32'
s.view_layers[0].use_pass_z = True
bpy.ops.wm.save_as_mainfile(filepath={str(scene)!r})
"""
    subprocess.run(
        [BLENDER, "-b", "--factory-startup", "--python-expr", make],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    (tmp_path / "farm").mkdir()
    with farm(tmp_path / "farm") as f:
        f.start_orchestrator()
        f.start_node(blender=BLENDER)
        wait_nodes(f, 1)
        result = farm_cli(f, tmp_path, "render", str(scene), "--frames", "1",
                          "--out", str(tmp_path / "frames"))  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        with httpx.Client(base_url=f.url, timeout=10) as client:
            assert client.get("/render").json()[0]["format"] == "OPEN_EXR_MULTILAYER"
    frame = (tmp_path / "frames" / "frame_00001.exr").read_bytes()
    assert frame.startswith(b"\x76\x2f\x31\x01")  # OpenEXR
    header = frame[:4000]
    assert b"ViewLayer.Depth.Z" in header or b"Depth.Z" in header  # the pass, as layers
    assert b"ViewLayer.Combined.R" in header
    # FLOAT (2) pixel type, not HALF (1): each channel entry ends name\0, int32 type, ...
    assert b"Combined.R\x00\x02\x00\x00\x00" in header


def test_a_named_scene_on_storage_mounted_elsewhere_renders_in_place_through_a_path_map(
    tmp_path: Path,
) -> None:
    """Shared storage: the shot names its library and textures by absolute paths under a
    mount point the node has elsewhere; --path-map finds them, and it renders in place."""
    if BLENDER is None:
        pytest.skip("no blender on PATH")
    mount = f"/farm-test-mount-{os.getpid()}"  # exists nowhere
    (tmp_path / "farm").mkdir()
    with farm(tmp_path / "farm") as f:
        shutil.copytree(SHOT, f.scenes, dirs_exist_ok=True)
        absolute = f"""
import bpy
for lib in bpy.data.libraries:
    lib.filepath = {mount!r} + '/lib/props.blend'
for image in bpy.data.images:
    if image.filepath.startswith('//') and not image.library:
        image.filepath = {mount!r} + '/' + image.filepath.split('../../', 1)[1]
bpy.ops.wm.save_as_mainfile(filepath={str(f.scenes / "shots/010/mounted.blend")!r},
                            relative_remap=False)
"""
        subprocess.run(
            [BLENDER, "-b", str(f.scenes / MAIN), "--python-expr", absolute],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        render_locally(f.scenes / MAIN, tmp_path / "local", "2")
        f.start_orchestrator()
        f.start_node(blender=BLENDER, extra=("--path-map", f"{mount}={f.scenes}"))
        wait_nodes(f, 1)
        with httpx.Client(base_url=f.url, timeout=10) as client:
            created = client.post(
                "/render", json={"scene": "shots/010/mounted.blend", "frames": "2"}
            )
            assert created.status_code == 202, created.text
            job_id = created.json()["id"]
            job = wait_job(client, job_id, timeout=180)
            assert job["state"] == "completed", job
            frame = client.get(f"/render/{job_id}/frames/2")
        (tmp_path / "farm.png").write_bytes(frame.content)
        assert same_pixels(tmp_path / "farm.png", tmp_path / "local" / "frame_00002.png")
