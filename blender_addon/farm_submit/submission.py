"""A submission's work once the open file is saved: pack the copy with every file it needs
(the same packer as `farm render`), send the farm only what it lacks, submit the job. Runs in
a worker thread; nothing here touches bpy."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .farm_api import FarmApi, FarmError, FarmRefused
from .worker import Progress


@contextlib.contextmanager
def importing_the_packer() -> Iterator[None]:
    """Around the import of farm_pack's packer, which `submit` does at the first submission
    rather than at every Blender start (BAT and the multiprocessing it imports take ~90 ms)."""
    try:
        import blender_asset_tracer  # noqa: F401
    except ImportError:
        # Blender 4.2+ installs the manifest's wheels; older Blenders import them from the
        # add-on's folder (blender-asset-tracer is pure Python, and imports from its wheel).
        for wheel in sorted((Path(__file__).parent / "wheels").glob("*.whl")):
            if str(wheel) not in sys.path:
                sys.path.append(str(wheel))
    multiprocessing_before = "multiprocessing" in sys.modules
    yield
    if not multiprocessing_before:
        # BAT imports multiprocessing, which keeps __main__ as __mp_main__. Called from a
        # `--python` script, that is the script's __main__, which Blender frees when the
        # script ends: Blender 3.4 then crashes on exit reading it. Nothing here spawns
        # processes.
        sys.modules.pop("__mp_main__", None)


class MissingAssets(FarmError):
    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass
class Submission:
    """What the main thread gathered: the saved copy, the name it goes by, the job's fields."""

    blend: Path
    main_as: str | None
    fields: dict[str, Any] = field(default_factory=dict)  # frames, batch_size, priority, ...
    allow_missing: bool = False


def job_fields(
    frames: str,
    *,
    batch_size: int = 0,
    priority: int = 0,
    tiles: int = 1,
    blender_version: str = "",
    device: str = "",
) -> dict[str, Any]:
    """The POST /render fields a submission sets; zero and empty mean the farm's default."""
    fields: dict[str, Any] = {"frames": frames, "priority": priority}
    if batch_size > 0:
        fields["batch_size"] = batch_size
    if tiles > 1:
        fields["tiles"] = tiles
    if blender_version:
        fields["blender_version"] = blender_version
    if device:
        fields["device"] = device
    return fields


def scene_frames(start: int, end: int, step: int) -> str:
    """The scene's frame range as a farm frame spec."""
    if end <= start:
        return str(start)
    return f"{start}-{end}" + (f"x{step}" if step > 1 else "")


def submit(api: FarmApi, submission: Submission, progress: Progress) -> dict[str, Any]:
    """Pack, upload and submit; the farm's answer to POST /render (its `id`, frames, batch
    size). Raises FarmError with what the artist must fix."""
    progress.say("packing: tracing the files the shot needs")
    with importing_the_packer():
        from .farm_pack.pack import PackError, hash_files, pack_shot
        from .farm_pack.ship import missing_files_message, pack_warnings, plan_upload, send
    try:
        with pack_shot(submission.blend, main_as=submission.main_as) as pack:
            progress.say(f"packing: hashing {len(pack.files)} files")
            hash_files(pack)
            if pack.missing and not submission.allow_missing:
                raise MissingAssets(
                    f"{missing_files_message(pack)}. Not submitted: restore them, or tick "
                    "'Render with missing files'",
                    [str(path) for path in pack.missing],
                )
            progress.say("asking the farm which files it lacks")
            upload = plan_upload(api, pack)
            sent = 0

            def on_bytes(count: int) -> None:
                nonlocal sent
                sent += count
                progress.say(
                    f"uploading {len(upload.files)} files: {sent / 1e6:.1f} of "
                    f"{upload.bytes / 1e6:.1f} MB",
                    sent / upload.bytes if upload.bytes else None,
                )

            if upload.files:
                send(api, upload, on_bytes)
            progress.say("submitting the job")
            body = {
                **submission.fields,
                "manifest": pack.manifest,
                "asset_warnings": pack_warnings(pack)[:200],
            }
            if submission.allow_missing:
                body["allow_missing"] = True
            try:
                created = api.submit(body)
            except FarmRefused as exc:
                if exc.status == 409 and "no node runs Blender" in str(exc):
                    raise FarmError(f"{exc}. In the Render Farm panel: set Blender to Any, "
                                    "or to a version the nodes run") from None  # fmt: skip
                raise
    except PackError as exc:
        raise FarmError(f"cannot pack the shot: {exc}") from None
    created["sent_files"] = len(upload.files)
    created["held_files"] = upload.held_files
    return created
