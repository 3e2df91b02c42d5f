"""The Render Farm panel in Output Properties: the job's options, Submit, the followed job's
progress, the farm's recent jobs. It draws from the job board alone: no network call here."""

from __future__ import annotations

import time
from typing import Any

import bpy

from . import state
from .board import job_fraction, progress_line
from .props import connection
from .submission import scene_frames


def draw_panel(layout: Any, context: Any) -> None:
    scene = context.scene
    settings = scene.farm
    current = state.session()
    board = current.board
    board.connect(connection(context))
    board.follow(settings.job_id or None)
    board.touch()
    seen = board.snapshot()

    farm = seen["connection"]
    who = seen["identity"]
    layout.label(
        text=f"Farm: {farm.url}" + (f" as {who['name']} ({who['role']})" if who else ""),
        icon="WORLD",
    )
    if seen["error"]:
        layout.label(text=seen["error"], icon="ERROR")

    col = layout.column(align=True)
    scene_range = scene_frames(scene.frame_start, scene.frame_end, scene.frame_step)
    if _can("prop", "placeholder"):
        col.prop(settings, "frames", placeholder=scene_range)
    else:
        col.prop(settings, "frames")
    col.prop(settings, "batch_size")
    col.prop(settings, "priority")
    col.prop(settings, "tiles")
    row = col.row(align=True)
    row.prop(settings, "blender_pin")
    if settings.blender_pin == "CUSTOM":
        row.prop(settings, "blender_version", text="")
    col.prop(settings, "device")
    col.prop(settings, "allow_missing")

    task = current.submitting
    if task is not None and not task.done:
        text, fraction = task.progress.read()
        _progress(layout, text or "submitting", fraction)
    else:
        layout.operator("farm.submit", icon="RENDER_ANIMATION")
    download = current.downloading
    if download is not None and not download.done:
        text, fraction = download.progress.read()
        _progress(layout, text or "downloading", fraction)
    if current.last_message:
        layout.label(text=current.last_message, icon="INFO")

    job = seen["followed_job"]
    if seen["followed"]:
        box = layout.box()
        box.label(text=f"Job {seen['followed']}", icon="RENDER_RESULT")
        if job is not None:
            _progress(box, progress_line(job), job_fraction(job))
            row = box.row(align=True)
            row.operator("farm.download_frames", icon="IMPORT").job_id = seen["followed"]
            row.operator("farm.open_dashboard", icon="URL").job_id = seen["followed"]
        else:
            box.label(text="asking the farm...")


def draw_jobs(layout: Any, context: Any) -> None:
    seen = state.session().board.snapshot()
    row = layout.row(align=True)
    row.operator("farm.refresh", icon="FILE_REFRESH")
    row.operator("farm.open_dashboard", icon="URL").job_id = ""
    if seen["refreshed"]:
        layout.label(text=f"as of {time.strftime('%H:%M:%S', time.localtime(seen['refreshed']))}")
    if not seen["jobs"]:
        layout.label(text="no jobs on the farm" if seen["refreshed"] else "not asked yet")
    for job in seen["jobs"]:
        box = layout.box()
        row = box.row()
        row.label(text=f"{job['id'][:12]}  {job.get('scene_name') or ''}")
        row.operator("farm.follow", text="", icon="HIDE_OFF").job_id = job["id"]
        row.operator("farm.download_frames", text="", icon="IMPORT").job_id = job["id"]
        row.operator("farm.open_dashboard", text="", icon="URL").job_id = job["id"]
        box.label(text=progress_line(job))


def _progress(layout: Any, text: str, fraction: float | None) -> None:
    """A progress bar where Blender has one (4.0+), else the text."""
    if fraction is not None and _can("progress"):
        layout.progress(factor=fraction, type="BAR", text=text)
    else:
        shown = text if fraction is None or "%" in text else f"{text} ({100 * fraction:.0f}%)"
        layout.label(text=shown)


def _can(function: str, parameter: str | None = None) -> bool:
    """Whether this Blender's UILayout has `function` (with `parameter`): the panel draws in
    3.x, where progress bars and placeholders do not exist yet."""
    found = bpy.types.UILayout.bl_rna.functions.get(function)
    return found is not None and (parameter is None or parameter in found.parameters)


class FARM_PT_submit(bpy.types.Panel):
    bl_label = "Render Farm"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"

    def draw(self, context: bpy.types.Context) -> None:
        draw_panel(self.layout, context)


class FARM_PT_jobs(bpy.types.Panel):
    bl_label = "Farm Jobs"
    bl_space_type = "PROPERTIES"
    bl_region_type = "WINDOW"
    bl_context = "output"
    bl_parent_id = "FARM_PT_submit"
    bl_options = {"DEFAULT_CLOSED"}

    def draw(self, context: bpy.types.Context) -> None:
        draw_jobs(self.layout, context)


CLASSES = (FARM_PT_submit, FARM_PT_jobs)
