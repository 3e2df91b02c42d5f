"""Render Farm: submit the open file to the farm from Blender, follow its jobs, download their
frames. A Blender extension (blender_manifest.toml, 4.2 and later) and a legacy add-on
(bl_info, 3.x) in one package; `make addon` builds its zip."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

bl_info = {
    "name": "Render Farm",
    "author": "blender-farm",
    "version": (0, 1, 0),
    "blender": (3, 4, 0),
    "location": "Properties > Output > Render Farm",
    "description": "Submit the open file to the render farm and follow its jobs",
    "category": "Render",
}


def _use_bundled_wheels() -> None:
    """Blender 4.2+ installs the manifest's wheels; older Blenders import them from here
    (blender-asset-tracer is pure Python, and imports from its wheel as it is)."""
    try:
        import blender_asset_tracer  # noqa: F401
    except ImportError:
        for wheel in sorted((Path(__file__).parent / "wheels").glob("*.whl")):
            if str(wheel) not in sys.path:
                sys.path.append(str(wheel))


_use_bundled_wheels()
_multiprocessing_before = "multiprocessing" in sys.modules

import bpy  # noqa: E402

from . import operators, panel, props, state  # noqa: E402

if not _multiprocessing_before:
    # BAT imports multiprocessing, which keeps __main__ as __mp_main__. Enabled from a
    # `--python` script, that is the script's __main__, which Blender frees when the script
    # ends: Blender 3.4 then crashes on exit reading it. Nothing here spawns processes.
    sys.modules.pop("__mp_main__", None)


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
