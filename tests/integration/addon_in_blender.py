"""Run inside Blender (`blender -b --factory-startup --python THIS -- ARGS`) or with bpy as a
module (`python THIS ARGS`): install the add-on's zip into the user folder the environment
names, enable it, and use it on a shot as an artist's pipeline would. Everything seen goes to
a JSON file for the test (tests/integration/test_blender_addon.py) to check."""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import site
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any


class HideInstalledBat:
    """Under bpy as a module, the test's venv has blender-asset-tracer installed for `farm`:
    hide that copy, so the add-on must bring its own."""

    def __init__(self) -> None:
        self.hidden = {str(Path(p).resolve()) for p in site.getsitepackages()}

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "blender_asset_tracer":
            return None
        visible = [p for p in sys.path if str(Path(p).resolve()) not in self.hidden]
        return importlib.machinery.PathFinder.find_spec(name, visible)


class Recorder:
    """A stand-in for Blender's UILayout that keeps what the panel draws."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines

    def label(self, text: str = "", **_: Any) -> None:
        self.lines.append(text)

    def progress(self, text: str = "", factor: float = 0.0, **_: Any) -> None:
        self.lines.append(f"{text} [bar {factor:.2f}]")

    def prop(self, data: Any, name: str, **_: Any) -> None:
        self.lines.append(f"prop {name}={getattr(data, name)!r}")

    def operator(self, idname: str, **_: Any) -> Any:
        self.lines.append(f"operator {idname}")
        return type("Props", (), {})()

    def column(self, **_: Any) -> Recorder:
        return self

    def row(self, **_: Any) -> Recorder:
        return self

    def box(self) -> Recorder:
        return self


def install(bpy: Any, zip_path: str) -> str:
    """Install and enable the zip the way this Blender does; the add-on's module name."""
    if bpy.app.version >= (4, 2, 0):
        bpy.ops.extensions.package_install_files(
            filepath=zip_path, repo="user_default", enable_on_install=True
        )
        module = "bl_ext.user_default.farm_submit"
    else:
        bpy.ops.preferences.addon_install(filepath=zip_path)
        bpy.ops.preferences.addon_enable(module="farm_submit")
        module = "farm_submit"
    if module not in bpy.context.preferences.addons:
        raise SystemExit(f"{module} is not enabled after installing {zip_path}")
    return module


def error_of(call: Any) -> str:
    try:
        call()
    except RuntimeError as exc:
        return str(exc)
    return ""


def run(args: argparse.Namespace, seen: dict[str, Any]) -> None:
    if args.hide_installed_bat:
        sys.meta_path.insert(0, HideInstalledBat())
    import bpy

    seen["blender"] = list(bpy.app.version)
    module_name = install(bpy, args.zip)
    addon = sys.modules[module_name]
    seen["bat_at_start"] = "blender_asset_tracer.pack" in sys.modules
    prefs = bpy.context.preferences.addons[module_name].preferences
    prefs.url, prefs.token = args.url, args.token

    bpy.ops.wm.open_mainfile(filepath=args.blend)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = 1, 8
    scene.render.filepath = "//farm_out/shot_####"
    settings = scene.farm
    settings.batch_size, settings.priority = 3, 7
    shot_folder = Path(args.blend).parent
    before = sorted(p.name for p in shot_folder.iterdir())

    started = time.monotonic()
    seen["submit"] = sorted(bpy.ops.farm.submit())
    seen["submit_seconds"] = round(time.monotonic() - started, 2)
    seen["job_id"] = settings.job_id
    seen["bat_file"] = sys.modules["blender_asset_tracer"].__file__
    seen["left_in_shot_folder"] = sorted(p.name for p in shot_folder.iterdir())
    seen["before_in_shot_folder"] = before
    seen["token_in_blend"] = args.token.encode() in Path(args.blend).read_bytes()

    board = addon.state.session().board
    deadline = time.monotonic() + 60
    job: dict[str, Any] = {}
    seen["progress_lines"] = []
    while time.monotonic() < deadline:
        assert board.refresh() is None, board.snapshot()["error"]
        job = board.snapshot()["followed_job"] or {}
        line = addon.board.progress_line(job) if job else ""
        if line and line not in seen["progress_lines"]:
            seen["progress_lines"].append(line)
        if job.get("state") in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    seen["job_state"] = job.get("state")
    panel: list[str] = []
    addon.panel.draw_panel(Recorder(panel), bpy.context)
    addon.panel.draw_jobs(Recorder(panel), bpy.context)
    seen["panel"] = panel

    seen["download"] = sorted(bpy.ops.farm.download_frames())
    out = shot_folder / "farm_out"
    seen["downloaded"] = sorted(p.name for p in out.iterdir()) if out.is_dir() else []

    # Failures, each as the status bar (and a pipeline's script) gets it.
    prefs.token = ""
    seen["error_401"] = error_of(bpy.ops.farm.submit)
    prefs.token = "not-a-token"
    seen["error_wrong_token"] = error_of(bpy.ops.farm.submit)
    prefs.token = args.view_token
    seen["error_403"] = error_of(bpy.ops.farm.submit)
    prefs.token, prefs.url = args.token, args.dead_url
    seen["error_unreachable"] = error_of(bpy.ops.farm.submit)
    prefs.url = args.url
    settings.blender_pin, settings.blender_version = "CUSTOM", "9.9"
    seen["error_version"] = error_of(bpy.ops.farm.submit)
    settings.blender_pin = "THIS"
    Path(args.remove).unlink()
    seen["error_missing"] = error_of(bpy.ops.farm.submit)
    seen["job_id_after_failures"] = settings.job_id

    # A file never saved goes from a temp folder, removed after.
    temps = sorted(Path(tempfile.gettempdir()).glob("farm-submit-*"))
    bpy.ops.wm.read_homefile(use_empty=True)
    bpy.context.scene.frame_start, bpy.context.scene.frame_end = 1, 3
    seen["untitled"] = sorted(bpy.ops.farm.submit())
    seen["untitled_job"] = bpy.context.scene.farm.job_id
    seen["temp_folders_left"] = sorted(Path(tempfile.gettempdir()).glob("farm-submit-*")) != temps


def main() -> None:
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else sys.argv[1:]
    parser = argparse.ArgumentParser()
    for name in ("zip", "blend", "url", "token", "view-token", "dead-url", "remove", "out"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--hide-installed-bat", action="store_true")
    args = parser.parse_args(argv)
    seen: dict[str, Any] = {}
    try:
        run(args, seen)
    except BaseException:
        seen["crash"] = traceback.format_exc()
    Path(args.out).write_text(json.dumps(seen, indent=1))


main()
