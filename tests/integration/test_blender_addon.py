"""The Blender add-on, headless, in Blender 3.4 (Debian's, as a legacy add-on) and in Blender 5.0
(bpy from PyPI, as an extension): installed from `make addon`'s zip into a temporary user
folder, pointed at an orchestrator with stand-in nodes, submitting the sample shot with its
library, textures and cache, following the job, downloading its frames, and failing clearly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from blender_addon.build import build
from tests.fake_node import FakeNode, fake_farm_app, serve_in_thread
from tests.integration.test_orchestrator_fake_nodes import node_urls
from tests.orch_helpers import fast_settings, orchestrator_in_thread, wait_until
from tests.servers import free_port

REPO = Path(__file__).resolve().parents[2]
SHOT = REPO / "scenes" / "shot"
SCRIPT = Path(__file__).with_name("addon_in_blender.py")
ADMIN = "admin-token-for-the-addon-test"
SHOT_FILES = {
    "shots/010/shot.blend",
    "lib/props.blend",
    "tex/wood.png",
    "tex/checker.png",
    "cache/wave.abc",
    *(f"tex/seq/glow_{n:04d}.png" for n in range(1, 7)),
}


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wheels = REPO / "dist" / "wheels"
    try:
        return build(wheels, tmp_path_factory.mktemp("addon"))
    except FileNotFoundError as exc:
        pytest.fail(f"{exc} (make test runs `make addon` first)")


def bpy_python() -> list[str]:
    found = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(bool(u.find_spec('bpy')))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    if found.stdout.strip() != "True":
        pytest.skip("bpy (Blender 5.0 as a module) is not installed: pip install -e '.[bpy]'")
    return [sys.executable, str(SCRIPT), "--hide-installed-bat"]


def blender_34() -> list[str]:
    blender = shutil.which("blender")
    if blender is None:
        pytest.skip("no blender binary: apt-get install blender")
    return [blender, "-b", "--factory-startup", "--python", str(SCRIPT), "--"]


ENGINES = {"blender": (blender_34, "3.4.1"), "bpy": (bpy_python, "5.0.1")}


@pytest.fixture
def farm(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """An orchestrator (admin token) with three stand-in nodes running `version`."""
    version = request.param
    nodes = [
        FakeNode(f"n{i}", slots=2, seconds_per_frame=0.3, blender_version=version) for i in range(3)
    ]
    settings = fast_settings(tmp_path, [], token=ADMIN)
    with (
        serve_in_thread(fake_farm_app(nodes)) as node_farm,
        orchestrator_in_thread(
            settings.model_copy(update={"node": node_urls(node_farm, 3)})
        ) as url,
        httpx.Client(
            base_url=url, timeout=10, headers={"Authorization": f"Bearer {ADMIN}"}
        ) as admin,
    ):
        wait_until(lambda: len(admin.get("/nodes").json()) == 3, what="nodes")
        tokens = {
            role: admin.post("/tokens", json={"name": f"artist-{role}", "role": role}).json()
            for role in ("submit", "view")
        }
        yield {"url": url, "admin": admin, "nodes": nodes, "tokens": tokens}


def run_in_blender(
    engine: str, addon_zip: Path, farm: dict[str, Any], tmp_path: Path
) -> dict[str, Any]:
    command, _ = ENGINES[engine]
    shot = tmp_path / "shot"
    shutil.copytree(SHOT, shot)
    out = tmp_path / "seen.json"
    user = tmp_path / "blender-user"
    env = {
        **os.environ,
        "BLENDER_USER_RESOURCES": str(user),  # 4.2+
        "BLENDER_USER_SCRIPTS": str(user / "scripts"),  # 3.x
        "BLENDER_USER_CONFIG": str(user / "config"),
    }
    env.pop("FARM_TOKEN", None)
    args = [
        "--zip", str(addon_zip),
        "--blend", str(shot / "shots" / "010" / "shot.blend"),
        "--url", farm["url"],
        "--token", farm["tokens"]["submit"]["token"],
        "--view-token", farm["tokens"]["view"]["token"],
        "--dead-url", f"http://127.0.0.1:{free_port()}",
        "--remove", str(shot / "tex" / "checker.png"),
        "--out", str(out),
    ]  # fmt: skip
    done = subprocess.run([*command(), *args], env=env, capture_output=True, text=True, timeout=240)
    assert out.is_file(), f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # Blender 3.4 used to crash on exit after the add-on was enabled from a script (see the
    # add-on's __init__): a pipeline would read that as a failure.
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    seen: dict[str, Any] = json.loads(out.read_text())
    assert "crash" not in seen, seen["crash"] + done.stdout[-3000:]
    seen["user_folder"] = str(user)
    seen["shot"] = str(shot)
    return seen


@pytest.mark.blender
@pytest.mark.parametrize(
    ("engine", "farm"), [(e, v) for e, (_, v) in ENGINES.items()], indirect=["farm"]
)
def test_the_addon_submits_the_open_shot_follows_it_and_downloads_its_frames(
    engine: str, addon_zip: Path, farm: dict[str, Any], tmp_path: Path
) -> None:
    seen = run_in_blender(engine, addon_zip, farm, tmp_path)
    major_minor = ".".join(str(n) for n in seen["blender"][:2])

    # The add-on's own blender-asset-tracer: from its wheel (3.x) or Blender's install of it.
    assert seen["bat_file"].startswith(seen["user_folder"]), seen["bat_file"]
    assert seen["bat_at_start"] is False  # imported at the first submission, not at start

    assert seen["submit"] == ["FINISHED"]
    job_id = seen["job_id"]
    job = farm["admin"].get(f"/render/{job_id}").json()
    assert job["frames_spec"] == "1-8"
    assert job["frames"]["total"] == 8
    assert job["batch_size"] == 3
    assert job["priority"] == 7
    assert job["blender_version"] == major_minor  # pinned to the artist's Blender
    assert job["submitted_by"] == "artist-submit"
    assert job["scene_name"] == "shots/010/shot.blend"  # the copy goes by the file's name

    # The shot went whole: its library, textures, sequence and cache, the main file renamed.
    manifests = [m for node in farm["nodes"] for m in node.manifests]
    assert manifests and set(manifests[0]) == SHOT_FILES

    # The copy is gone from the artist's folder; the token is not in the .blend.
    assert seen["left_in_shot_folder"] == seen["before_in_shot_folder"]
    assert seen["token_in_blend"] is False

    assert seen["job_state"] == "completed"
    assert seen["progress_lines"][-1] == "completed: 8/8 frames (100%)"
    assert any(
        line.startswith("running: ") and ", ETA " in line for line in seen["progress_lines"]
    ), seen["progress_lines"]
    panel = "\n".join(seen["panel"])
    assert f"Job {job_id}" in panel
    assert "completed: 8/8 frames (100%)" in panel
    assert "as artist-submit (submit)" in panel

    assert seen["download"] == ["FINISHED"]
    assert seen["downloaded"] == [f"shot_{n:04d}.png" for n in range(1, 9)]

    assert "wants a valid token" in seen["error_401"], seen["error_401"]
    assert "Preferences" in seen["error_401"]
    assert "refused this token: wrong token" in seen["error_wrong_token"]
    assert "refused this token" in seen["error_403"] and "view" in seen["error_403"]
    assert "cannot reach the farm" in seen["error_unreachable"]
    assert "Is the farm running?" in seen["error_unreachable"]
    assert "1 file(s) the shot needs are missing" in seen["error_missing"]
    assert "checker.png" in seen["error_missing"]
    assert "no node runs Blender 9.9" in seen["error_version"]
    assert "set Blender to Any" in seen["error_version"]
    assert seen["job_id_after_failures"] == job_id  # no failure replaced the job
    assert seen["untitled"] == ["FINISHED"]
    # No failure submitted anything: the farm has the shot's job and the untitled one.
    jobs = {j["id"] for j in farm["admin"].get("/render").json()}
    assert jobs == {job_id, seen["untitled_job"]}
    untitled = farm["admin"].get(f"/render/{seen['untitled_job']}").json()
    assert untitled["scene_name"] == "untitled.blend" and untitled["frames_spec"] == "1-3"
    assert seen["temp_folders_left"] is False


@pytest.mark.blender
@pytest.mark.parametrize("farm", ["3.4.1"], indirect=True)
def test_the_submit_button_works_in_blenders_ui_while_it_keeps_running(
    addon_zip: Path, farm: dict[str, Any], tmp_path: Path
) -> None:
    """The modal path, which background mode never takes: Blender 3.4 with its UI under Xvfb
    (software GL), buttons pressed from a timer on the main thread."""
    blender, xvfb = shutil.which("blender"), shutil.which("xvfb-run")
    if blender is None or xvfb is None:
        pytest.skip("needs blender and xvfb-run: apt-get install blender xvfb")
    shot = tmp_path / "shot"
    shutil.copytree(SHOT, shot)
    out = tmp_path / "seen.json"
    screenshot = REPO / "test-artifacts" / "addon-panel-blender-3.4.png"
    screenshot.parent.mkdir(exist_ok=True)
    user = tmp_path / "blender-user"
    env = {
        **os.environ,
        "BLENDER_USER_SCRIPTS": str(user / "scripts"),
        "BLENDER_USER_CONFIG": str(user / "config"),
    }
    done = subprocess.run(
        [
            xvfb, "-a", "-s", "-screen 0 1400x2400x24",
            blender, "--factory-startup", str(shot / "shots" / "010" / "shot.blend"),
            "--python", str(SCRIPT.with_name("addon_in_blender_ui.py")), "--",
            str(addon_zip), farm["url"], farm["tokens"]["submit"]["token"], str(out),
            str(screenshot),
        ],
        env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert out.is_file(), f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    seen = json.loads(out.read_text())
    assert "crash" not in seen, seen["crash"] + done.stdout[-3000:]
    assert done.returncode == 0, done.stdout[-3000:]
    # The work went to a thread: the operator returned at once and Blender's loop went on.
    assert seen["submit"] == ["RUNNING_MODAL"]
    assert seen["phases"] == ["submitting", "following", "downloading"]
    # Followed by the add-on's poller (no refresh asked): the panel's line reached the end.
    assert seen["last_line"] == "completed: 6/6 frames (100%)"
    assert seen["download"] == ["RUNNING_MODAL"]
    assert seen["download_result"]["saved"] == 6
    assert seen["message"].endswith(f"6 frames saved in {shot / 'shots' / '010' / 'farm_out'}")
    assert sorted(p.name for p in (shot / "shots" / "010" / "farm_out").iterdir()) == [
        f"shot_{n:04d}.png" for n in range(1, 7)
    ]
    job = farm["admin"].get(f"/render/{seen['job_id']}").json()
    assert job["state"] == "completed" and job["submitted_by"] == "artist-submit"
    assert screenshot.is_file()
