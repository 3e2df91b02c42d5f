"""A stand-in for Blender's Python module, for the warm engine's tests (render_node/warm.py).

It renders nothing: `bpy.ops.render.render(write_still=True)` runs the render handlers, says
`Sample a/b` through `render_stats`, prints Blender 5's log lines and writes a small real PNG.
Behaviour comes from the same FAKE_BLENDER_* variables as tests/fake_blender.py:

FAKE_BLENDER_STARTUP   seconds `import bpy` takes                                   default 0
FAKE_BLENDER_SECONDS   seconds per frame                                           default 0.05
FAKE_BLENDER_FAIL      frames whose render raises Blender's error, e.g. "13,17"
FAKE_BLENDER_CRASH     frame at which the process dies by SIGSEGV
FAKE_BLENDER_HANG      frame at which it hangs forever, printing nothing
FAKE_BLENDER_NO_OUTPUT frames that are "saved" but write no file
FAKE_BLENDER_LOG       a file to which each rendered frame number is appended
FAKE_BLENDER_TRACE     a file to which "PID open SCENE" and "PID frame N" lines are appended,
                       and "PID border N:MINX,MAXX,MINY,MAXY:CROP" for a frame of a region
FAKE_BLENDER_VERSION   the version it reports, default "5.0.1"
FAKE_BLENDER_FREESTYLE "1": the scene enables Freestyle
FAKE_BLENDER_IMAGES    image files (comma-separated) the scene uses
FAKE_BLENDER_ALLOCATE_MB  MB allocated at the first frame (a memory limit makes it crash)
FAKE_BPY_DEVICES       the GPUs Cycles finds, as JSON: [{"type": "CUDA", "id": ..., "name": ...}]
FAKE_BLENDER_SIZE, FAKE_BLENDER_BY_AREA  as tests/fake_blender.py: with either set, a frame is
                       that size (a region: its part of it) and takes its region's share
FAKE_BLENDER_SAMPLES   as tests/fake_blender.py (Cycles' samples; Blender 4.2's sample subset)
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
import types
import zlib

# tests/fake_blender.py, from wherever the worker runs: the same images and regions.
_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
sys.path.insert(0, _ROOT)
from tests.fake_blender import (  # noqa: E402
    StandInImages,
    cycles_settings,
    frame_region,
    png_bytes,
    rendered_samples,
    sample_pixels,
    seconds_for,
    write_image,
)

time.sleep(float(os.environ.get("FAKE_BLENDER_STARTUP", "0")))


def _frames(name: str) -> set[int]:
    return {int(v) for v in os.environ.get(name, "").split(",") if v.strip()}


def _png(shade: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = (b"\x00" + bytes([shade % 256, 80, 160]) * 32) * 24
    header = struct.pack(">IIBBBBB", 32, 24, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + (chunk(b"IEND", b""))
    )


def _trace(what: str) -> None:
    trace = os.environ.get("FAKE_BLENDER_TRACE")
    if trace:
        with open(trace, "a") as fh:
            fh.write(f"{os.getpid()} {what}\n")


def _log(line: str) -> None:
    print(f"00:00.000  render           | {line}", flush=True)


class _Device:
    def __init__(self, kind: str, ident: str, name: str) -> None:
        self.type, self.id, self.name, self.use = kind, ident, name, False


class _CyclesPrefs:
    def __init__(self) -> None:
        found = json.loads(os.environ.get("FAKE_BPY_DEVICES") or "[]")
        self._all = [_Device(d["type"], d["id"], d["name"]) for d in found]
        self.compute_device_type = "NONE"
        self.devices: list[_Device] = []

    def get_devices_for_type(self, kind: str) -> list[_Device]:
        listed = [d for d in self._all if d.type == kind]
        self.devices = [*listed, _Device("CPU", "CPU", "CPU")]
        return listed

    def get_devices(self) -> None:
        self.get_devices_for_type(self.compute_device_type)


class _ImageSettings:
    file_format = "PNG"
    media_type = "IMAGE"
    color_depth = "8"
    exr_codec = "ZIP"


class _Render:
    def __init__(self) -> None:
        self.filepath = "//render_"
        self.use_file_extension = True
        self.image_settings = _ImageSettings()
        self.threads_mode = "AUTO"
        self.threads = 1
        self.engine = "CYCLES"
        self.use_freestyle = os.environ.get("FAKE_BLENDER_FREESTYLE") == "1"
        self.use_border = False
        self.use_crop_to_border = False
        self.border_min_x = self.border_min_y = 0.0
        self.border_max_x = self.border_max_y = 1.0

    @property
    def file_extension(self) -> str:
        return {
            "PNG": ".png",
            "JPEG": ".jpg",
            "OPEN_EXR": ".exr",
            "OPEN_EXR_MULTILAYER": ".exr",
        }.get(self.image_settings.file_format, ".png")


class _Scene:
    def __init__(self) -> None:
        self.name = "Scene"
        self.render = _Render()
        self.cycles = cycles_settings(subset=True)
        self.view_layers = [types.SimpleNamespace(cycles=types.SimpleNamespace(use_denoising=True))]
        self.frame_current = 1
        self.node_tree = types.SimpleNamespace(name="Compositing", nodes=[])

    def frame_set(self, frame: int) -> None:
        self.frame_current = frame


app = types.SimpleNamespace(
    version_string=os.environ.get("FAKE_BLENDER_VERSION", "5.0.1"),
    version=(5, 0, 1),
    handlers=types.SimpleNamespace(render_pre=[], render_stats=[]),
)
path = types.SimpleNamespace(abspath=lambda p, start=None, library=None: p)
context = types.SimpleNamespace(
    scene=None,
    preferences=types.SimpleNamespace(
        addons={"cycles": types.SimpleNamespace(preferences=_CyclesPrefs())}
    ),
)
data = types.SimpleNamespace(
    scenes=[], node_groups=[], objects=[], libraries=[], images=StandInImages()
)
_held: list[bytearray] = []


def _open_mainfile(filepath: str, load_ui: bool = True, use_scripts: bool = True) -> set[str]:
    if not os.path.exists(filepath):
        raise RuntimeError(f'Error: Cannot read file "{filepath}": No such file or directory')
    if use_scripts:
        raise AssertionError("the node must open scenes with use_scripts=False")
    _trace(f"open {filepath}")
    scene = _Scene()
    context.scene = scene
    data.scenes = [scene]
    data.images = StandInImages(
        types.SimpleNamespace(source="FILE", filepath=p, packed_file=None, library=None)
        for p in filter(None, os.environ.get("FAKE_BLENDER_IMAGES", "").split(","))
    )
    app.handlers.render_pre.clear()  # as Blender: handlers go with the file loaded before
    app.handlers.render_stats.clear()
    _log(f'Read blend: "{filepath}"')
    return {"FINISHED"}


def _render(write_still: bool = False) -> set[str]:
    scene = context.scene
    frame = scene.frame_current
    for handler in list(app.handlers.render_pre):
        handler(scene)
    megabytes = int(os.environ.get("FAKE_BLENDER_ALLOCATE_MB", "0"))
    if megabytes and not _held:
        try:
            block = bytearray(megabytes << 20)
        except MemoryError:
            _log(f"Malloc returns null: len={megabytes << 20} in fake bpy")
            os.kill(os.getpid(), signal.SIGSEGV)
        _held.append(block)
    if frame in _frames("FAKE_BLENDER_CRASH"):
        os.kill(os.getpid(), signal.SIGSEGV)
    _trace(f"start {frame}")
    if frame in _frames("FAKE_BLENDER_HANG"):
        while True:
            time.sleep(3600)
    samples = 4
    size, region = frame_region(scene.render)
    seconds = seconds_for(region, size, rendered_samples(scene.cycles))
    for sample in range(1, samples + 1):
        time.sleep(seconds / samples)
        for handler in list(app.handlers.render_stats):
            handler(f"Mem: 3M | Sample {sample}/{samples}")
        _log(f"Fra:{frame} Mem:9.17M | Sample {sample}/{samples}")
    if frame in _frames("FAKE_BLENDER_FAIL"):
        raise RuntimeError(f"Error: CUDA error: Out of memory in cuMemAlloc (frame {frame})")
    target = scene.render.filepath
    if scene.render.use_file_extension:
        target += scene.render.file_extension
    if write_still and frame not in _frames("FAKE_BLENDER_NO_OUTPUT"):
        sized = "FAKE_BLENDER_SIZE" in os.environ or "FAKE_BLENDER_BY_AREA" in os.environ
        tmp = target + ".tmp" + os.path.splitext(target)[1]
        samples = rendered_samples(scene.cycles)
        if samples:
            width, height = region[2] - region[0], region[3] - region[1]
            pixels = sample_pixels(size, region, frame, samples)
            write_image(tmp, width, height, pixels, scene.render.image_settings.file_format)
        else:
            with open(tmp, "wb") as fh:
                fh.write(png_bytes(*size, frame, region) if sized else _png(frame))
        os.replace(tmp, target)
    log = os.environ.get("FAKE_BLENDER_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{frame}\n")
    r = scene.render
    if r.use_border:
        edges = (r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y)
        _trace(f"border {frame}:{','.join(map(str, edges))}:{int(r.use_crop_to_border)}")
    _trace(f"frame {frame}")
    _log(f"Saved: '{target}'")
    return {"FINISHED"}


ops = types.SimpleNamespace(
    wm=types.SimpleNamespace(open_mainfile=_open_mainfile),
    render=types.SimpleNamespace(render=_render),
)
sys.modules.setdefault("bpy", sys.modules[__name__])
