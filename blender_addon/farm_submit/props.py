"""The add-on's settings: the farm's URL and token in the preferences (so the token is never
saved in a .blend), a job's options on the scene."""

from __future__ import annotations

import os

import bpy

from .board import Connection

ADDON = __package__  # "farm_submit", or "bl_ext.<repo>.farm_submit" as an extension
DEFAULT_URL = "http://127.0.0.1:8000"


class FarmPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON

    url: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Farm URL",
        description=f"The orchestrator's address (empty: FARM_ORCHESTRATOR, else {DEFAULT_URL})",
        default="",
    )
    token: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Token",
        description="A submit (or admin) token from `farm token create NAME --role submit` "
        "(empty: FARM_TOKEN). Kept in Blender's preferences, never in a .blend",
        default="",
        subtype="PASSWORD",
    )
    ca_cert: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="CA certificate",
        description="For a farm on HTTPS with a private CA: its certificate (PEM) "
        "(empty: FARM_CA_CERT, else the system's CAs)",
        default="",
        subtype="FILE_PATH",
    )

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "url")
        layout.prop(self, "token")
        layout.prop(self, "ca_cert")


def connection(context: bpy.types.Context) -> Connection:
    """Where the farm is and how to sign in: the preferences, else the environment (for
    pipelines running `blender -b` with the factory settings)."""
    addon = context.preferences.addons.get(ADDON)
    prefs = addon.preferences if addon is not None else None
    url = (prefs.url.strip() if prefs else "") or os.environ.get("FARM_ORCHESTRATOR", "")
    token = (prefs.token.strip() if prefs else "") or os.environ.get("FARM_TOKEN", "")
    ca_cert = (bpy.path.abspath(prefs.ca_cert) if prefs and prefs.ca_cert else "") or (
        os.environ.get("FARM_CA_CERT", "")
    )
    return Connection(url=url or DEFAULT_URL, token=token, ca_cert=ca_cert)


TILES = [
    ("1", "Whole frames", "Each frame rendered whole by one node"),
    ("4", "4 regions", "Split each frame in 2x2 regions rendered on different nodes"),
    ("9", "9 regions", "Split each frame in 3x3 regions rendered on different nodes"),
    ("16", "16 regions", "Split each frame in 4x4 regions rendered on different nodes"),
    ("25", "25 regions", "Split each frame in 5x5 regions rendered on different nodes"),
]
PINS = [
    ("THIS", "This Blender", "Render only on nodes running this Blender's major.minor version"),
    ("ANY", "Any", "Render on any node, whatever Blender it runs"),
    ("CUSTOM", "Version", "Render only on nodes running the version given"),
]
DEVICES = [
    ("ANY", "Any", "Any node"),
    ("CPU", "CPU", "Only nodes that render on the CPU"),
    ("GPU", "GPU", "Only nodes that render on a GPU"),
]


class FarmJobSettings(bpy.types.PropertyGroup):
    frames: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Frames",
        description="Frames to render as the farm reads them: 1-100, 1-100x5 (every 5th), "
        "1,3,7, 1-10,20-30. Empty: the scene's frame range and step",
        default="",
    )
    batch_size: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Batch size",
        description="Frames a node renders in one go (0: the farm sizes batches itself)",
        default=0,
        min=0,
        max=10_000,
    )
    priority: bpy.props.IntProperty(  # type: ignore[valid-type]
        name="Priority",
        description="Higher runs first among queued jobs",
        default=0,
        min=-1000,
        max=1000,
    )
    tiles: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Split frames", items=TILES, default="1"
    )
    blender_pin: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Blender", items=PINS, default="THIS"
    )
    blender_version: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Version", description="e.g. 4.2 (any 4.2.x) or 4.2.3", default=""
    )
    device: bpy.props.EnumProperty(  # type: ignore[valid-type]
        name="Device", items=DEVICES, default="ANY"
    )
    allow_missing: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="Render with missing files",
        description="Submit although files the shot needs are missing (they render as "
        "Blender renders them locally: magenta textures, absent linked objects)",
        default=False,
    )
    job_id: bpy.props.StringProperty(  # type: ignore[valid-type]
        name="Job", description="The last job submitted from this scene", default=""
    )


def pinned_version(settings: FarmJobSettings) -> str:
    if settings.blender_pin == "THIS":
        return "{}.{}".format(*bpy.app.version[:2])
    if settings.blender_pin == "CUSTOM":
        return str(settings.blender_version).strip()
    return ""


CLASSES = (FarmPreferences, FarmJobSettings)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.Scene.farm = bpy.props.PointerProperty(type=FarmJobSettings)


def unregister() -> None:
    del bpy.types.Scene.farm
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
