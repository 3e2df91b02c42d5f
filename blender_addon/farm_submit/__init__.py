"""Render Farm: submit the open file to the farm from Blender, follow its jobs, download their
frames. A Blender extension (blender_manifest.toml, 4.2 and later) and a legacy add-on
(bl_info, 3.x) in one package; `make addon` builds its zip."""

from __future__ import annotations

import contextlib

import bpy

from . import operators, panel, props, state

bl_info = {
    "name": "Render Farm",
    "author": "blender-farm",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Output > Render Farm",
    "description": "Submit the open file to the render farm and follow its jobs",
    "category": "Render",
}


def _tick() -> float:
    """On the main thread, every second: hand the preferences to the board, redraw the panel
    when the board changed."""
    current = state.session()
    with contextlib.suppress(AttributeError, KeyError):  # preferences not readable yet
        current.board.connect(props.connection(bpy.context))
    if current.board.version != getattr(_tick, "seen", None):
        _tick.seen = current.board.version  # type: ignore[attr-defined]
        operators.redraw_properties()
    return 1.0


def register() -> None:
    props.register()
    for cls in operators.CLASSES + panel.CLASSES:
        bpy.utils.register_class(cls)
    state.start(background=bpy.app.background)
    if not bpy.app.background:
        bpy.app.timers.register(_tick, first_interval=1.0, persistent=True)


def unregister() -> None:
    if bpy.app.timers.is_registered(_tick):
        bpy.app.timers.unregister(_tick)
    state.stop()
    for cls in reversed(operators.CLASSES + panel.CLASSES):
        bpy.utils.unregister_class(cls)
    props.unregister()
