"""The add-on's operators: submit the open file, download a job's frames, refresh the job
list, open the dashboard. Submit and download run their network work in a thread and follow
it with a modal timer, so Blender's UI never waits; in background mode (`blender -b`, a
pipeline's script) they run to the end before returning, and a failure raises."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bpy

from . import state
from .farm_api import FarmApi, FarmError
from .props import connection, pinned_version
from .submission import Submission, job_fields, scene_frames, submit
from .worker import Progress, Task

COPY_PREFIX = ".farm-submit-"


def farm_api(context: bpy.types.Context, timeout: float = 30.0) -> FarmApi:
    farm = connection(context)
    return FarmApi(farm.url, farm.token, farm.ca_cert, timeout=timeout)


def redraw_properties() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "PROPERTIES":
                area.tag_redraw()


@dataclass
class SavedCopy:
    path: Path
    name: str  # the name it goes by on the farm: the open file's
    temp_folder: Path | None = None  # made for an unsaved file

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
        if self.temp_folder is not None:
            shutil.rmtree(self.temp_folder, ignore_errors=True)


def save_copy() -> SavedCopy:
    """Save the open file as it is now (unsaved edits included) beside it, uncompressed so
    any packer can read it, without touching the artist's file. An unsaved file goes to a
    temp folder (its paths are absolute: relative ones need a saved file)."""
    original = bpy.data.filepath
    temp_folder = None
    if original:
        folder, name = os.path.split(original)
    else:
        temp_folder = Path(tempfile.mkdtemp(prefix="farm-submit-"))
        folder, name = str(temp_folder), "untitled.blend"
    saved = SavedCopy(Path(folder) / f"{COPY_PREFIX}{os.getpid()}-{name}", name, temp_folder)
    try:
        bpy.ops.wm.save_as_mainfile(filepath=str(saved.path), copy=True, compress=False)
    except RuntimeError as exc:
        saved.remove()
        raise FarmError(f"cannot save a copy of the file in {folder}: {exc}") from None
    return saved


class FarmModal:
    """An operator whose network work runs in a thread: `prepare` (main thread) makes the
    task, a timer follows it, `finished` (main thread) reports. In background mode, or when a
    script calls the operator, the task runs to its end before the call returns."""

    _timer: Any = None
    task: Task
    report: Any  # bpy.types.Operator's

    def prepare(self, context: bpy.types.Context) -> Task:
        raise NotImplementedError

    def finished(self, context: bpy.types.Context, task: Task) -> set[str]:
        raise NotImplementedError

    def execute(self, context: bpy.types.Context) -> set[str]:
        try:
            task = self.prepare(context).run_here()
        except FarmError as exc:
            return self.failed(str(exc))
        return self.finished(context, task)

    def invoke(self, context: bpy.types.Context, event: Any) -> set[str]:
        if bpy.app.background:
            return self.execute(context)
        try:
            task = self.prepare(context)
        except FarmError as exc:
            return self.failed(str(exc))
        return self.follow(context, task)

    def failed(self, message: str) -> set[str]:
        """The status bar's error (a script's RuntimeError), and the panel's last line."""
        state.session().last_message = message
        self.report({"ERROR"}, message)
        return {"CANCELLED"}

    def succeeded(self, message: str) -> set[str]:
        """The status bar's news, and the panel's last line."""
        state.session().last_message = message
        self.report({"INFO"}, message)
        return {"FINISHED"}

    def follow(self, context: bpy.types.Context, task: Task) -> set[str]:
        self.task = task.start()
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.25, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def modal(self, context: bpy.types.Context, event: Any) -> set[str]:
        if event.type != "TIMER":
            return {"PASS_THROUGH"}
        redraw_properties()
        if not self.task.done:
            return {"PASS_THROUGH"}
        context.window_manager.event_timer_remove(self._timer)
        return self.finished(context, self.task)


class FARM_OT_submit(FarmModal, bpy.types.Operator):
    """Save a copy of this file, pack it with every file it needs, send the farm what it
    lacks and submit the job"""

    bl_idname = "farm.submit"
    bl_label = "Submit to Farm"
    bl_options = {"REGISTER"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        task = state.session().submitting
        return context.scene is not None and (task is None or task.done)

    def prepare(self, context: bpy.types.Context) -> Task:
        scene = context.scene
        settings = scene.farm
        frames = settings.frames.strip() or scene_frames(
            scene.frame_start, scene.frame_end, scene.frame_step
        )
        fields = job_fields(
            frames,
            batch_size=settings.batch_size,
            priority=settings.priority,
            tiles=int(settings.tiles),
            blender_version=pinned_version(settings),
            device="" if settings.device == "ANY" else settings.device.lower(),
        )
        api = farm_api(context)
        saved = save_copy()
        submission = Submission(
            saved.path, saved.name, fields, allow_missing=settings.allow_missing
        )

        def work(progress: Progress) -> dict[str, Any]:
            try:
                return submit(api, submission, progress)
            finally:
                saved.remove()

        task = Task("submit", work)
        state.session().submitting = task
        return task

    def finished(self, context: bpy.types.Context, task: Task) -> set[str]:
        missing = getattr(task.failure, "missing", None)
        if task.error is not None:
            for path in missing or []:
                self.report({"WARNING"}, f"missing: {path}")
            return self.failed(task.error)
        created = task.result
        job_id = str(created["id"])
        context.scene.farm.job_id = job_id
        current = state.session()
        current.board.connect(connection(context))
        current.follow(job_id)
        return self.succeeded(
            f"job {job_id} submitted: {created.get('frames')} frames in batches of "
            f"{created.get('batch_size')}; sent {created.get('sent_files', 0)} files, "
            f"{created.get('held_files', 0)} already on the farm"
        )


def frame_targets(scene: bpy.types.Scene, frames: list[int]) -> dict[int, Path]:
    """Where each frame goes: where rendering this scene here would write it."""
    return {frame: Path(scene.render.frame_path(frame=frame)) for frame in frames}


class FARM_OT_download_frames(FarmModal, bpy.types.Operator):
    """Download the job's rendered frames into this scene's output folder, named as a local
    render names them"""

    bl_idname = "farm.download_frames"
    bl_label = "Download Frames"

    job_id: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Job", description="The job (empty: the last one submitted from this scene)"
    )

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        task = state.session().downloading
        return context.scene is not None and (task is None or task.done)

    def prepare(self, context: bpy.types.Context) -> Task:
        job_id = self.job_id or context.scene.farm.job_id
        if not job_id:
            raise FarmError("no job to download: submit one, or pick one in the job list")
        api = farm_api(context)
        targets = frame_targets(context.scene, api.done_frames(job_id))
        if not targets:
            raise FarmError(f"job {job_id} has no rendered frames yet")
        overwrite = context.scene.render.use_overwrite

        def work(progress: Progress) -> dict[str, Any]:
            saved, kept = 0, 0
            for count, (frame, target) in enumerate(sorted(targets.items()), 1):
                if target.exists() and not overwrite:
                    kept += 1
                    continue
                progress.say(f"downloading frame {frame} ({count}/{len(targets)})",
                             count / len(targets))  # fmt: skip
                api.download_frame(job_id, frame, target)
                saved += 1
            folder = os.path.dirname(next(iter(targets.values())))
            return {"job": job_id, "saved": saved, "kept": kept, "folder": folder}

        task = Task("download", work)
        state.session().downloading = task
        return task

    def finished(self, context: bpy.types.Context, task: Task) -> set[str]:
        if task.error is not None:
            return self.failed(task.error)
        done = task.result
        message = f"job {done['job']}: {done['saved']} frames saved in {done['folder']}"
        if done["kept"]:
            message += f" ({done['kept']} already there kept: Overwrite is off)"
        return self.succeeded(message)


class FARM_OT_refresh(bpy.types.Operator):
    """Ask the farm for its recent jobs now"""

    bl_idname = "farm.refresh"
    bl_label = "Refresh"

    def execute(self, context: bpy.types.Context) -> set[str]:
        board = state.session().board
        board.connect(connection(context))
        error = board.refresh()
        if error:
            self.report({"ERROR"}, error)
            return {"CANCELLED"}
        return {"FINISHED"}


class FARM_OT_follow(bpy.types.Operator):
    """Show this job's progress in the panel"""

    bl_idname = "farm.follow"
    bl_label = "Follow Job"

    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        context.scene.farm.job_id = self.job_id
        state.session().follow(self.job_id or None)
        return {"FINISHED"}


class FARM_OT_open_dashboard(bpy.types.Operator):
    """Open the farm's dashboard (or a job's page) in the web browser"""

    bl_idname = "farm.open_dashboard"
    bl_label = "Open Dashboard"

    job_id: bpy.props.StringProperty()  # type: ignore[valid-type]

    def execute(self, context: bpy.types.Context) -> set[str]:
        url = connection(context).url.rstrip("/")
        bpy.ops.wm.url_open(url=f"{url}/jobs/{self.job_id}" if self.job_id else f"{url}/")
        return {"FINISHED"}


CLASSES = (
    FARM_OT_submit,
    FARM_OT_download_frames,
    FARM_OT_refresh,
    FARM_OT_follow,
    FARM_OT_open_dashboard,
)
