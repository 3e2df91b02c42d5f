"""Blender's command line and its output, as pure code: no processes, no files.

`build_command` makes the argument list; `OutputParser` turns Blender's stdout, fed line by
line, into events (frame started, sample progress, saved, error, quit).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farm_common.blendfile import opens
from farm_common.protocol import ImageFormat, frame_name, frame_pattern
from farm_common.tiles import Border
from render_node.devices import USE_DEVICE_EXPR
from render_node.scene_checks import FREESTYLE_CHECK, asset_check, path_map_expr, scene_guard


def output_pattern(output_dir: Path) -> str:
    return str(output_dir / frame_pattern())


def output_file(output_dir: Path, frame: int, fmt: ImageFormat) -> Path:
    """Where Blender writes `frame` for the pattern `output_pattern(output_dir)`."""
    return output_dir / frame_name(frame, fmt.extension)


def build_command(
    blender: str,
    scene_path: Path,
    output_dir: Path,
    frames: list[int],
    fmt: ImageFormat,
    threads: int,
    *,
    allow_freestyle: bool = False,
    guard_dir: Path | None = None,
    set_format: bool = True,
    allow_missing: bool = False,
    path_map: Sequence[tuple[str, str]] = (),
    device: dict[str, Any] | None = None,
    border: Border | None = None,
    samples: tuple[int, int, int] | None = None,
    develop: dict[int, Path] | None = None,
) -> list[str]:
    """Blender runs its arguments in order: the .blend first, output options, render args last.

    `--disable-autoexec` is applied before any file is loaded, wherever it stands.
    `device`: the slot's GPU (None: the scene's own device, the CPU on a node without).
    `guard_dir`: where the scene guard sends File Output nodes and caches (none: no guard).
    `set_format`: pass `-F fmt`; without it the scene's own output settings hold (format,
    depth, codec, layers) and `fmt` only names what it writes.
    `border`: render that region of each frame alone (farm_common/tiles.py).
    `samples`: (start, count, total), render those Cycles samples alone, in float OpenEXR.
    `develop`: frame -> a linear float image, saved as the scene saves its renders instead of
    rendering `frames` (nothing of the scene is evaluated but the frame's settings, so the
    checks on what a render would run or read are not needed).
    """
    output = ["-o", output_pattern(output_dir), *(["-F", fmt.name] if set_format else [])]
    if develop is not None:
        wanted = sorted(develop)
        if wanted != sorted(frames):
            raise ValueError(f"develop images for frames {wanted}, asked for {frames}")
        return [
            blender, "-b", str(scene_path), "--disable-autoexec", *output,
            "--python-expr", develop_expr({f: develop[f] for f in frames}),
        ]  # fmt: skip
    check = [] if allow_freestyle else ["--python-expr", FREESTYLE_CHECK]
    guard = [] if guard_dir is None else ["--python-expr", scene_guard(guard_dir)]
    assets = ["--python-expr", asset_check(allow_missing)]
    if path_map:
        assets = ["--python-expr", path_map_expr(path_map), *assets]
    if device is not None:  # the slot's GPU (devices.USE_DEVICE_EXPR)
        assets += ["--python-expr", USE_DEVICE_EXPR % (device,)]
    if border is not None:
        assets += ["--python-expr", border_expr(border)]
    if samples is not None:
        assets += ["--python-expr", samples_expr(*samples)]
    return [
        blender,
        "-b",
        str(scene_path),
        "--disable-autoexec",
        *check,
        *assets,
        *guard,
        *output,
        "-t",
        str(threads),
        *blender_frame_args(frames),
    ]


def border_expr(border: Border) -> str:
    """Python for Blender: render `border` of the frame, cropped to it. The edges are set
    after a reset to the whole frame, so no minimum ever exceeds its maximum on the way."""
    return (
        "import bpy; r = bpy.context.scene.render; "
        "r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.0, 1.0, 0.0, 1.0; "
        f"r.border_min_x, r.border_max_x = {border.min_x!r}, {border.max_x!r}; "
        f"r.border_min_y, r.border_max_y = {border.min_y!r}, {border.max_y!r}; "
        "r.use_border = True; r.use_crop_to_border = True"
    )


# A part of a frame split by samples: `count` of its `total` samples from `start` on, the
# scene's seed, nothing that depends on the rest (adaptive sampling stops a pixel by its own
# noise; the denoiser wants the whole), written as it is: linear light in 32-bit float. Since
# Blender 4.2 the sampling pattern is laid out for the total, and a part is a "sample subset"
# of it; before, `samples` from `sample_offset` on.
SAMPLES_EXPR = (
    "import bpy; s = bpy.context.scene; c = s.cycles\n"
    "if s.render.engine != 'CYCLES':\n"
    "    print('Error: a sample split renders with Cycles; the scene renders with '"
    " + s.render.engine, flush=True); raise SystemExit(1)\n"
    "start, count, total = %d, %d, %d\n"
    "if hasattr(c, 'use_sample_subset'):\n"
    "    c.samples, c.use_sample_subset, c.sample_offset, c.sample_subset_length = "
    "total, True, start, count\n"
    "else:\n"
    "    c.samples, c.sample_offset = count, start\n"
    "c.use_adaptive_sampling = c.use_denoising = False\n"
    "for layer in s.view_layers: layer.cycles.use_denoising = False\n"
    "f = s.render.image_settings\n"
    "if hasattr(f, 'media_type'): f.media_type = 'IMAGE'\n"
    "f.file_format, f.color_depth, f.exr_codec = 'OPEN_EXR', '32', 'ZIP'"
)


def samples_expr(start: int, count: int, total: int) -> str:
    """Python for Blender: render samples `start`..`start + count - 1` of `total` alone, in
    float OpenEXR."""
    return SAMPLES_EXPR % (start, count, total)


# Finishing a frame split by samples: the merged image (linear light, float) saved the way
# Blender saves a render of the scene: its output format and settings, view transform, look,
# exposure, gamma and curves at that frame (`save_render` with the scene). Run with `bpy`, `s`
# (the scene, at the frame), `source` and `path` (where the frame goes, extension included).
DEVELOP_ONE = (
    "image = bpy.data.images.load(source)\n"
    "image.colorspace_settings.name = 'Linear' if bpy.app.version < (4, 0, 0) "
    "else 'Linear Rec.709'\n"
    "image.save_render(path, scene=s)\n"
    "bpy.data.images.remove(image)\n"
)


def develop_expr(images: dict[int, Path]) -> str:
    """Python for Blender (after `-o`): develop each frame's image (DEVELOP_ONE), saying
    `Fra:` and `Saved:` as a render does, or `Error:` for a frame that could not be."""
    return (
        "import bpy; s = bpy.context.scene\n"
        f"for frame, source in {[(f, str(p)) for f, p in sorted(images.items())]!r}:\n"
        "    print('Fra:%d farm: developing %s' % (frame, source), flush=True)\n"
        "    s.frame_set(frame); path = s.render.frame_path(frame=frame)\n"
        "    try:\n"
        f"        exec({DEVELOP_ONE!r})\n"
        "    except Exception as exc:\n"
        "        print('Error: cannot develop frame %d: %s' % (frame, exc), flush=True)\n"
        "    else:\n"
        "        print(\"Saved: '%s'\" % path, flush=True)\n"
    )


def blender_frame_args(frames: list[int]) -> list[str]:
    """The render arguments for a batch: `-s A -e B -j S -a` for an even run, else `-f a,b,c`.

    These arguments must come last on Blender's command line (it runs arguments in order).
    """
    if not frames:
        raise ValueError("no frames to render")
    if len(frames) == 1:
        return ["-f", str(frames[0])]
    step = frames[1] - frames[0]
    if step > 0 and all(b - a == step for a, b in itertools.pairwise(frames)):
        return ["-s", str(frames[0]), "-e", str(frames[-1]), "-j", str(step), "-a"]
    return ["-f", ",".join(str(f) for f in frames)]


# Linux caps one argument at 128 KiB; a long `-f a,b,c,...` list is split across runs.
MAX_FRAME_LIST_CHARS = 30_000


def frames_for_one_command(frames: list[int], limit: int = MAX_FRAME_LIST_CHARS) -> list[int]:
    """The leading frames whose render arguments fit one Blender command line."""
    if sum(len(a) + 1 for a in blender_frame_args(frames)) <= limit:
        return frames
    length = 0
    for i, frame in enumerate(frames):
        length += len(str(frame)) + 1
        if length > limit:
            return frames[: max(i, 1)]
    return frames


def version_refusal(saved: tuple[int, int] | None, blender: str | None) -> str | None:
    """Why this node will not render a scene saved by Blender `saved` (major, minor) with its
    Blender `blender` ("3.4.1"): an older Blender cannot open a newer file, or opens it
    wrong. None when it can, or when either version is unknown."""
    if saved is None or opens(blender, saved):
        return None
    wanted = f"{saved[0]}.{saved[1]}"
    return (
        f"the scene was saved by Blender {wanted}, newer than this node's Blender {blender}, "
        f"which cannot open it correctly: render it on nodes with Blender {wanted} or later "
        f"(a job's blender_version pins it to them)"
    )


_VERSION = re.compile(r"^Blender (\d+\.\d+(?:\.\d+)?)")


def parse_version(text: str) -> str | None:
    """'Blender 3.4.1\\n...' -> '3.4.1'."""
    for line in text.splitlines():
        match = _VERSION.match(line.strip())
        if match:
            return match.group(1)
    return None


# --- output parsing -------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameStarted:
    frame: int


@dataclass(frozen=True)
class SampleProgress:
    frame: int
    sample: int
    total: int


@dataclass(frozen=True)
class Saved:
    frame: int | None
    path: str


@dataclass(frozen=True)
class ErrorLine:
    frame: int | None  # the frame being rendered when it came, None between frames
    message: str


@dataclass(frozen=True)
class MissingFile:
    """A file the scene needs that Blender could not find (our check's line, or Blender's)."""

    frame: int | None  # the frame being rendered when it came, None while loading
    path: str
    kind: str = "file"


@dataclass(frozen=True)
class Quit:
    pass


Event = FrameStarted | SampleProgress | Saved | ErrorLine | MissingFile | Quit

# Blender 5.x logs through CLOG: "render | Fra:1 ...", possibly after a timestamp.
_PREFIX = re.compile(r"^\s*(?:\S+\s+){0,2}?render\s*\|\s?")
_FRA = re.compile(r"^Fra:(\d+)\b")
# Cycles: "| Sample 5/16"; Eevee: "| Rendering 5 / 64 samples".
_SAMPLE = re.compile(r"\|\s*(?:Sample (\d+)\s*/\s*(\d+)|Rendering (\d+) / (\d+) samples)")
_SAVED = re.compile(
    r"^Saved:\s*(?:'(?P<sq>[^']*)'|\"(?P<dq>[^\"]*)\"|(?P<bare>.+?))(?:\s+Time:.*)?\s*$"
)
_ERROR = re.compile(r"^(?:Error|ERROR)(?:\s*\([^)]*\))?\s*:\s*(?P<msg>.+)$")
# Blender's allocator when malloc fails (e.g. under the node's --memory-limit-mb).
_MALLOC_NULL = re.compile(r"^(?:Malloc|Calloc|Memoryblock) .*(?:returns null|unable to alloc)")
# Missing files, as our asset check names them. Blender's own "Unable to open" lines for a
# library come before --path-map has had its say, so they decide nothing: the check does.
_MISSING = re.compile(
    r"^farm: missing (?P<kind>[a-z ]+) (?P<q>['\"])(?P<path>.*)(?P=q)"
    r"(?: \(frame (?P<frame>\d+)\))?$"
)
# Cycles reports device failures in the status part of a Fra: line.
_DEVICE_ERROR = re.compile(r"\|\s*(?P<msg>(?:CUDA|OptiX|HIP|Metal|oneAPI) error\b.*)$")


class OutputParser:
    """Incremental parser: `feed` one line, get the events it carries.

    Tracks the frame being rendered so that `Error:` lines can be attached to it; after a
    frame's `Saved:` line, errors belong to no frame until the next `Fra:` line.
    """

    def __init__(self) -> None:
        self.current: int | None = None  # frame seen in the latest Fra: line, not yet saved
        self.last_error: str | None = None
        self.quit = False

    def feed(self, raw: str) -> list[Event]:
        line = _PREFIX.sub("", raw.rstrip("\r\n"), count=1).strip()
        if not line:
            return []
        events: list[Event] = []
        fra = _FRA.match(line)
        if fra:
            frame = int(fra.group(1))
            if frame != self.current:
                self.current = frame
                events.append(FrameStarted(frame))
            sample = _SAMPLE.search(line)
            if sample:
                done, total = (g for g in sample.groups() if g is not None)
                events.append(SampleProgress(frame, int(done), int(total)))
            device = _DEVICE_ERROR.search(line)
            if device:
                events.append(self._error(device.group("msg").strip()))
            return events
        saved = _SAVED.match(line)
        if saved:
            path = saved.group("sq") or saved.group("dq") or saved.group("bare") or ""
            events.append(Saved(self.current, path.strip()))
            self.current = None
            return events
        error = _ERROR.match(line)
        if error:
            events.append(self._error(error.group("msg").strip()))
            return events
        missing = _MISSING.match(line)
        if missing:
            at = int(missing["frame"]) if missing["frame"] else self.current
            events.append(MissingFile(at, missing["path"], missing["kind"]))
            return events
        if _MALLOC_NULL.match(line):
            events.append(self._error(f"out of memory ({line[:200]})"))
            return events
        if line == "Blender quit":
            self.quit = True
            events.append(Quit())
        return events

    def _error(self, message: str) -> ErrorLine:
        self.last_error = message
        return ErrorLine(self.current, message)
