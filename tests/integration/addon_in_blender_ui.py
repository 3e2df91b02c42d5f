"""Run inside Blender with its UI (under Xvfb): press the add-on's buttons as an artist does,
from a timer on Blender's main thread, so the operators take their modal path (their work in a
thread, the UI running) and the panel is kept fresh by the add-on's own poller. What is seen
goes to a JSON file for tests/integration/test_blender_addon.py."""

from __future__ import annotations

import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import bpy

argv = sys.argv[sys.argv.index("--") + 1 :]
ZIP, URL, TOKEN, OUT, SCREENSHOT = argv
seen: dict[str, Any] = {"ticks": 0, "phases": []}
phase = {"name": "start", "since": time.monotonic()}


def goto(name: str) -> None:
    phase.update(name=name, since=time.monotonic())
    seen["phases"].append(name)


def properties() -> dict[str, Any]:
    for window in bpy.context.window_manager.windows:
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                return {"window": window, "area": area}
    raise RuntimeError("no Properties editor on screen")


def finish() -> None:
    Path(OUT).write_text(json.dumps(seen, indent=1))
    bpy.ops.wm.quit_blender()


def tick() -> float | None:
    seen["ticks"] += 1
    waited = time.monotonic() - phase["since"]
    try:
        if waited > 90:
            raise TimeoutError(f"stuck in phase {phase['name']}")
        addon = sys.modules["farm_submit"]
        board = addon.state.session().board
        if phase["name"] == "start" and waited > 1:
            editor = properties()
            editor["area"].spaces[0].context = "OUTPUT"
            with bpy.context.temp_override(**editor):
                seen["submit"] = sorted(bpy.ops.farm.submit("INVOKE_DEFAULT"))
            goto("submitting")
        elif phase["name"] == "submitting":
            task = addon.state.session().submitting
            if task is not None and not task.done:
                seen["ticks_while_submitting"] = seen.get("ticks_while_submitting", 0) + 1
            elif bpy.context.scene.farm.job_id:
                seen["job_id"] = bpy.context.scene.farm.job_id
                seen["submit_message"] = addon.state.session().last_message
                goto("following")
        elif phase["name"] == "following":
            job = board.snapshot()["followed_job"] or {}
            seen["last_line"] = addon.board.progress_line(job) if job else ""
            if job.get("state") == "completed":
                editor = properties()
                with bpy.context.temp_override(**editor):
                    bpy.ops.screen.screenshot(filepath=SCREENSHOT)
                    seen["download"] = sorted(bpy.ops.farm.download_frames("INVOKE_DEFAULT"))
                goto("downloading")
        elif phase["name"] == "downloading":
            task = addon.state.session().downloading
            message = addon.state.session().last_message
            # Done once the modal operator has reported (on its next timer event).
            if task is not None and task.done and message != seen.get("submit_message"):
                seen["download_result"] = task.result
                seen["message"] = addon.state.session().last_message
                finish()
                return None
    except Exception:
        seen["crash"] = traceback.format_exc()
        finish()
        return None
    return 0.1


bpy.ops.preferences.addon_install(filepath=ZIP)
bpy.ops.preferences.addon_enable(module="farm_submit")
prefs = bpy.context.preferences.addons["farm_submit"].preferences
prefs.url, prefs.token = URL, TOKEN
scene = bpy.context.scene
scene.frame_start, scene.frame_end = 1, 6
scene.render.filepath = "//farm_out/shot_####"
bpy.app.timers.register(tick, first_interval=1.0)
