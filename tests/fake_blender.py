#!/usr/bin/env python3
"""A stand-in for `blender -b` that speaks its command line and prints its output.

It renders nothing: it prints Blender 3.4's lines (`Fra:`, `Sample a/b`, `Saved: '...'`) and
writes a small real PNG per frame, so the node and the orchestrator can be tested quickly and
with faults injected. Behaviour comes from environment variables (a node passes its own
environment to Blender, so each test node can behave differently):

FAKE_BLENDER_STARTUP   seconds before the first frame (Blender's start-up cost)   default 0
FAKE_BLENDER_SECONDS   seconds per frame                                           default 0.05
FAKE_BLENDER_FAIL      frames that print an `Error:` and save nothing, e.g. "13,17"; also
                       those listed in the file FAKE_BLENDER_FAIL_FILE names, at each run
FAKE_BLENDER_CRASH     frame at which the process dies by SIGSEGV, like a Blender crash
FAKE_BLENDER_HANG      frame at which it hangs forever, printing nothing
FAKE_BLENDER_NO_OUTPUT frames that print `Saved:` but write no file, exit code 0
FAKE_BLENDER_BROKEN    frames that print an `Error:` and then save (a broken image) anyway
FAKE_BLENDER_OLD_SAVED print the unquoted `Saved: /path Time: ...` form of old Blender
FAKE_BLENDER_LOG       a file to which each rendered frame number is appended (to count renders)
FAKE_BLENDER_VERSION   the version it reports, default "3.4.1"
FAKE_BLENDER_FREESTYLE "1": the scene enables Freestyle (scene.render.use_freestyle); every
                       `--python-expr` runs against a stand-in `bpy` that says so
FAKE_BLENDER_ALLOCATE_MB  MB to allocate when the first frame starts; past the process's
                       memory limit it prints Blender's "Malloc returns null" and crashes
FAKE_BLENDER_ENV_DUMP  a file to which it writes its environment as JSON
FAKE_BLENDER_FILE_OUTPUT  the scene has a compositor File Output node with this base_path
                       (`//` is the .blend's folder) and a slot "escaped_": every frame also
                       writes a PNG there, after `--python-expr` code had its say, as Blender
FAKE_BLENDER_IMAGES    image files (comma-separated) the scene uses: the node's asset check
                       finds the absent ones missing, as in Blender
FAKE_BLENDER_WRITE     files (comma-separated) it tries to write at start, as an exploited
                       Blender would; it prints what happened to each
FAKE_BLENDER_SIZE      the frames' size, default "32x24"; a render border with crop set by
                       `--python-expr` code (a tile) gives that region of it, as Blender
FAKE_BLENDER_FAIL_AT   "X,Y": frames whose region holds that pixel fail like FAKE_BLENDER_FAIL
FAKE_BLENDER_BY_AREA   "1": FAKE_BLENDER_SECONDS is for the whole frame, a region takes its
                       share of it by area, a sample part its share of the samples (a path
                       tracer's time goes with its pixels and samples)
FAKE_BLENDER_SAMPLES   the scene's Cycles samples: each sample of a pixel has its own value
                       (`sample_pixels`), an OPEN_EXR frame holds the float mean of the samples
                       rendered (all, or a part's: `--python-expr` code sets Cycles' sample
                       offset, as Blender), other formats that mean developed (`develop`), and
                       `image.save_render` develops an EXR it is given. Needs OpenImageIO
                       (found in the checkout's .venv when the Python running this lacks it)
FAKE_BLENDER_ENGINE    the scene's render engine, default CYCLES
"""

from __future__ import annotations

import glob
import json
import os
import signal
import struct
import sys
import time
import types
import zlib
from typing import Any

PYTHON_EXPRS: list[str] = []
FORMAT = ["PNG"]
OUTPUT = ["//render_"]  # -o  # -F, or the scene's (a stand-in's: PNG)
EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "OPEN_EXR": ".exr", "OPEN_EXR_MULTILAYER": ".exr"}
SIZE = (32, 24)  # the frame's
REGION = (0, 0, 32, 24)  # what an image holds: (left, top, right, bottom) of the frame


def frames_from_args(args: list[str]) -> tuple[str, str, list[int]]:
    """Walk the arguments in order, the way Blender does; return (scene, output, frames)."""
    scene = ""
    output = "//render_"
    start, end, jump = 1, 1, 1
    frames: list[int] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-b", "--background"):
            if i + 1 < len(args) and not args[i + 1].startswith("-"):
                scene = args[i + 1]
                i += 1
        elif arg.endswith(".blend") and not scene:
            scene = arg
        elif arg in ("-o", "--render-output"):
            output = args[i + 1]
            i += 1
        elif arg in ("-s", "--frame-start"):
            start = int(args[i + 1])
            i += 1
        elif arg in ("-e", "--frame-end"):
            end = int(args[i + 1])
            i += 1
        elif arg in ("-j", "--frame-jump"):
            jump = int(args[i + 1])
            i += 1
        elif arg in ("-a", "--render-anim"):
            frames.extend(range(start, end + 1, jump))
        elif arg in ("-f", "--render-frame"):
            for part in args[i + 1].split(","):
                if ".." in part:
                    a, b = part.split("..")
                    frames.extend(range(int(a), int(b) + 1))
                else:
                    frames.append(int(part))
            i += 1
        elif arg == "--python-expr":
            PYTHON_EXPRS.append(args[i + 1])
            i += 1
        elif arg in ("-F", "--render-format"):
            FORMAT[0] = args[i + 1]
            i += 1
        elif arg in ("-t", "--threads", "-E", "--engine"):
            i += 1
        i += 1
    return scene, output, frames


def output_path(pattern: str, frame: int, ext: str = ".png") -> str:
    hashes = 0
    for ch in reversed(pattern):
        if ch == "#":
            hashes += 1
        elif hashes:
            break
    if hashes:
        idx = pattern.rfind("#" * hashes)
        return pattern[:idx] + str(frame).zfill(hashes) + pattern[idx + hashes :] + ext
    return pattern + str(frame).zfill(4) + ext


def png_bytes(
    width: int, height: int, shade: int, region: tuple[int, int, int, int] | None = None
) -> bytes:
    """A `width` x `height` RGB PNG, red `shade`, green and blue by column and row; `region`
    (left, top, right, bottom): that part of it alone, as a cropped render."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    left, top, right, bottom = region or (0, 0, width, height)
    width, height = right - left, bottom - top
    raw = b"".join(
        b"\x00"
        + b"".join(bytes([shade % 256, x * 7 % 256, y * 11 % 256]) for x in range(left, right))
        for y in range(top, bottom)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def env_frames(name: str) -> set[int]:
    """Frames listed in the variable `name`, or in the file its `name`_FILE variable names
    (read at each run: a test changes what fails between two renders)."""
    value = os.environ.get(name, "")
    listed = os.environ.get(f"{name}_FILE")
    if listed and os.path.exists(listed):
        with open(listed) as fh:
            value += "," + fh.read()
    return {int(v) for v in value.split(",") if v.strip()}


def run_python_exprs() -> list[types.SimpleNamespace]:
    """Run `--python-expr` code the way Blender would, against a stand-in `bpy`; returns the
    scene's File Output nodes as that code left them."""
    render = types.SimpleNamespace(use_freestyle=os.environ.get("FAKE_BLENDER_FREESTYLE") == "1")
    outputs = []
    if "FAKE_BLENDER_FILE_OUTPUT" in os.environ:
        slot = types.SimpleNamespace(path="escaped_")
        outputs.append(
            types.SimpleNamespace(
                bl_idname="CompositorNodeOutputFile",
                name="File Output",
                base_path=os.environ["FAKE_BLENDER_FILE_OUTPUT"],
                file_slots=[slot],
            )
        )
    tree = types.SimpleNamespace(name="Compositing", nodes=outputs)
    render.engine = os.environ.get("FAKE_BLENDER_ENGINE", "CYCLES")
    render.image_settings = types.SimpleNamespace(
        file_format=FORMAT[0], color_depth="8", exr_codec="ZIP"
    )
    scene = types.SimpleNamespace(
        name="Scene", render=render, node_tree=tree, cycles=cycles_settings(),
        view_layers=[types.SimpleNamespace(cycles=types.SimpleNamespace(use_denoising=True))],
    )  # fmt: skip
    scene.frame_set = lambda frame: None
    scene.render.frame_path = lambda frame: output_path(
        OUTPUT[0], frame, EXTENSIONS.get(render.image_settings.file_format, ".png")
    )
    bpy = types.ModuleType("bpy")
    bpy.context = types.SimpleNamespace(scene=scene)  # type: ignore[attr-defined]
    # FAKE_BLENDER_IMAGES: image files the scene uses (comma-separated; absent ones are missing)
    images = [
        types.SimpleNamespace(source="FILE", filepath=path, packed_file=None, library=None)
        for path in filter(None, os.environ.get("FAKE_BLENDER_IMAGES", "").split(","))
    ]
    bpy.data = types.SimpleNamespace(  # type: ignore[attr-defined]
        scenes=[scene], node_groups=[], objects=[], libraries=[], images=StandInImages(images)
    )
    bpy.path = types.SimpleNamespace(  # type: ignore[attr-defined]
        abspath=lambda path, start=None, library=None: path
    )
    bpy.app = types.SimpleNamespace(  # type: ignore[attr-defined]
        handlers=types.SimpleNamespace(render_pre=[]), version=(3, 4, 1)
    )
    sys.modules["bpy"] = bpy
    global REGION, SIZE
    for expr in PYTHON_EXPRS:
        SIZE, REGION = frame_region(render)  # what an image it develops holds
        exec(compile(expr, "<string>", "exec"), {"__name__": "__main__"})
    SIZE, REGION = frame_region(render)
    FORMAT[0] = render.image_settings.file_format
    SAMPLES[0] = rendered_samples(scene.cycles)
    return outputs


# --- samples: FAKE_BLENDER_SAMPLES ----------------------------------------------------------

SAMPLES = [range(0)]  # the samples a frame renders (none: not a sampled scene)


def cycles_settings(subset: bool = False) -> types.SimpleNamespace:
    """Cycles' scene settings as a stand-in has them; `subset`: Blender 4.2's sample subset."""
    cycles = types.SimpleNamespace(
        samples=int(os.environ.get("FAKE_BLENDER_SAMPLES", "0")), sample_offset=0,
        use_adaptive_sampling=True, use_denoising=True, device="CPU",
    )  # fmt: skip
    if subset:
        cycles.use_sample_subset, cycles.sample_subset_length = False, 0
    return cycles


def rendered_samples(cycles: Any) -> range:
    """The samples a render with `cycles`' settings takes, as Cycles counts them."""
    if getattr(cycles, "use_sample_subset", False):
        return range(cycles.sample_offset, cycles.sample_offset + cycles.sample_subset_length)
    return range(cycles.sample_offset, cycles.sample_offset + cycles.samples)


def _oiio() -> Any:
    try:
        import OpenImageIO
    except ImportError:  # the system's Python: the checkout's virtual environment has it
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        sys.path[:0] = glob.glob(os.path.join(root, ".venv", "lib", "python3*", "site-packages"))
        import OpenImageIO
    return OpenImageIO


def _numpy() -> Any:
    _oiio()  # the same environment has numpy
    import numpy

    return numpy


def sample_pixels(
    size: tuple[int, int], region: tuple[int, int, int, int], frame: int, samples: range
) -> Any:
    """The RGB floats (rows from the top, a numpy array) of `region` of a frame: each pixel
    the mean of its `samples`, every sample a value of its own around the pixel's colour."""
    np = _numpy()
    left, top, right, bottom = region
    y, x, channel = np.meshgrid(
        np.arange(top, bottom), np.arange(left, right), np.arange(3), indexing="ij"
    )
    base = np.stack([np.full(x.shape[:2], frame % 256), x[..., 0] * 7 % 256,
                     y[..., 0] * 11 % 256], axis=-1) / 255  # fmt: skip
    noise = np.zeros(x.shape)
    for s in samples:
        noise += (s * 7919 + x * 31 + y * 17 + channel) % 13 - 6
    return base + noise / len(samples) / 255


def write_image(path: str, width: int, height: int, pixels: Any, fmt: str) -> None:
    """Float RGB `pixels` (numpy) as a 32-bit float EXR, or developed (clamped, 8-bit)."""
    oiio, np = _oiio(), _numpy()
    exr = fmt.startswith("OPEN_EXR")
    spec = oiio.ImageSpec(width, height, 3, oiio.FLOAT if exr else oiio.UINT8)
    if exr:
        spec.attribute("compression", "zip")
    out = oiio.ImageOutput.create(path)
    if out is None or not out.open(path, spec):
        raise OSError(f"cannot write {path}: {oiio.geterror()}")
    data = np.asarray(pixels, dtype=np.float32).reshape(height, width, 3)
    out.write_image(data if exr else np.clip(data, 0.0, 1.0))
    out.close()


def develop(source: str, path: str, fmt: str) -> None:
    """A float image saved in `fmt` as a stand-in develops it (clamped to 0..1, 8-bit)."""
    oiio = _oiio()
    buf = oiio.ImageBuf(source)
    spec = buf.spec()
    write_image(path, spec.width, spec.height, buf.get_pixels(oiio.FLOAT)[..., :3], fmt)


class StandInImage:
    def __init__(self, source: str) -> None:
        self.filepath = source
        self.colorspace_settings = types.SimpleNamespace(name="sRGB")

    def save_render(self, filepath: str, scene: Any = None) -> None:
        if not self.colorspace_settings.name.startswith("Linear"):
            raise RuntimeError("the stand-in develops linear images only")
        develop(self.filepath, filepath, scene.render.image_settings.file_format)


class StandInImages(list[Any]):
    """bpy.data.images: the scene's images, and `load`/`remove` for the ones code loads."""

    def load(self, filepath: str) -> StandInImage:
        if not os.path.isfile(filepath):
            raise RuntimeError(f'Error: Cannot read image "{filepath}"')
        image = StandInImage(filepath)
        self.append(image)
        return image

    def remove(self, image: Any) -> None:
        if image in self:
            list.remove(self, image)


def frame_region(render: object) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The frame's size (FAKE_BLENDER_SIZE) and the part of it a render of `render`'s settings
    holds: (left, top, right, bottom), the whole frame but for a border with crop."""
    width, height = (int(n) for n in os.environ.get("FAKE_BLENDER_SIZE", "32x24").split("x"))
    if not (getattr(render, "use_border", False) and getattr(render, "use_crop_to_border", False)):
        return (width, height), (0, 0, width, height)
    # Blender's pixels: int(fraction x size) for each edge, y counted from the bottom.
    edges = (render.border_min_x, render.border_max_x, render.border_min_y, render.border_max_y)  # type: ignore[attr-defined]
    min_x, max_x, min_y, max_y = (struct.unpack("f", struct.pack("f", e))[0] for e in edges)
    region = (
        int(min_x * width),
        height - int(max_y * height),
        int(max_x * width),
        height - int(min_y * height),
    )
    return (width, height), region


def seconds_for(
    region: tuple[int, int, int, int], size: tuple[int, int], samples: range = range(0)
) -> float:
    """FAKE_BLENDER_SECONDS, or with FAKE_BLENDER_BY_AREA the region's share of it (and a
    sample part's share of the scene's FAKE_BLENDER_SAMPLES)."""
    seconds = float(os.environ.get("FAKE_BLENDER_SECONDS", "0.05"))
    if os.environ.get("FAKE_BLENDER_BY_AREA") == "1":
        seconds *= (region[2] - region[0]) * (region[3] - region[1]) / (size[0] * size[1])
        if samples:
            seconds *= len(samples) / int(os.environ["FAKE_BLENDER_SAMPLES"])
    return seconds


def file_output_path(base: str, slot: str, frame: int, blend: str) -> str:
    """Blender's rule: `//` is the .blend's folder; `#`s take the frame, else 4 digits."""
    path = base + slot
    if path.startswith("//"):
        path = os.path.join(os.path.dirname(os.path.abspath(blend)), path[2:])
    if "#" in path:
        width = path.count("#")
        path = path.replace("#" * width, str(frame).zfill(width), 1)
    else:
        path += f"{frame:04d}"
    return os.path.normpath(path) + ".png"


def write_frame(path: str, frame: int, fmt: str) -> None:
    """The frame's image (REGION of it), written whole or not at all."""
    tmp = path + ".tmp" + os.path.splitext(path)[1]
    if SAMPLES[0]:
        width, height = REGION[2] - REGION[0], REGION[3] - REGION[1]
        write_image(tmp, width, height, sample_pixels(SIZE, REGION, frame, SAMPLES[0]), fmt)
    else:
        with open(tmp, "wb") as fh:
            fh.write(png_bytes(*SIZE, frame, REGION))
    os.replace(tmp, path)


def exploit_writes() -> None:
    for target in filter(None, os.environ.get("FAKE_BLENDER_WRITE", "").split(",")):
        try:
            with open(target, "wb") as fh:
                fh.write(b"written by the scene")
            print(f"fake: wrote {target}", flush=True)
        except OSError as exc:
            print(f"fake: could not write {target}: {exc.strerror}", flush=True)


def allocate(mb: int) -> bytearray | None:
    try:
        block = bytearray(mb << 20)
    except MemoryError:
        print(f"Malloc returns null: len={mb << 20} in fake_blender, total 0", flush=True)
        os.kill(os.getpid(), signal.SIGSEGV)
        return None
    for i in range(0, len(block), 4096):  # touch it, as a renderer does
        block[i] = 1
    return block


def main() -> int:
    args = sys.argv[1:]
    version = os.environ.get("FAKE_BLENDER_VERSION", "3.4.1")
    if "--version" in args or "-v" in args:
        print(f"Blender {version}")
        print("\tbuild date: 2026-01-01")
        return 0
    scene, output, frames = frames_from_args(args)
    OUTPUT[0] = output
    print(f"Blender {version}", flush=True)
    if not scene or not os.path.exists(scene):
        print(f"Error: Cannot read file '{scene}': No such file or directory", flush=True)
        print("\nBlender quit", flush=True)
        return 0
    print(f"Read blend: {scene}", flush=True)
    if os.environ.get("FAKE_BLENDER_ENV_DUMP"):
        with open(os.environ["FAKE_BLENDER_ENV_DUMP"], "w") as fh:
            json.dump(dict(os.environ), fh)
    file_outputs = run_python_exprs()
    exploit_writes()
    allocate_mb = int(os.environ.get("FAKE_BLENDER_ALLOCATE_MB", "0"))
    held: bytearray | None = None
    time.sleep(float(os.environ.get("FAKE_BLENDER_STARTUP", "0")))
    seconds = seconds_for(REGION, SIZE, SAMPLES[0])
    fail = env_frames("FAKE_BLENDER_FAIL")
    if os.environ.get("FAKE_BLENDER_FAIL_AT"):
        x, y = (int(n) for n in os.environ["FAKE_BLENDER_FAIL_AT"].split(","))
        if REGION[0] <= x < REGION[2] and REGION[1] <= y < REGION[3]:
            fail.update(frames)
    no_output = env_frames("FAKE_BLENDER_NO_OUTPUT")
    broken = env_frames("FAKE_BLENDER_BROKEN")
    crash = env_frames("FAKE_BLENDER_CRASH")
    hang = env_frames("FAKE_BLENDER_HANG")
    old_saved = bool(os.environ.get("FAKE_BLENDER_OLD_SAVED"))
    log = os.environ.get("FAKE_BLENDER_LOG")
    samples = 4
    for frame in frames:
        mem = "Fra:{f} Mem:9.17M (Peak 10.30M) | Time:00:00.03 | Mem:0.01M, Peak:0.01M | "
        prefix = mem.format(f=frame) + "Scene, ViewLayer | "
        print(prefix + "Synchronizing object | Cube", flush=True)
        if allocate_mb and held is None:
            held = allocate(allocate_mb)
        if frame in crash:
            print("Writing: /tmp/blender.crash.txt", flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
        if frame in hang:
            while True:
                time.sleep(3600)
        for sample in range(1, samples + 1):
            time.sleep(seconds / samples)
            print(prefix + f"Sample {sample}/{samples}", flush=True)
        if frame in fail:
            print(f"Error: CUDA error: Out of memory in cuMemAlloc (frame {frame})", flush=True)
            continue
        if frame in broken:
            print(f"Error: CUDA error: an illegal memory access (frame {frame})", flush=True)
        print(prefix + "Finished", flush=True)
        path = output_path(
            output, frame, EXTENSIONS.get(FORMAT[0], ".png") if SAMPLES[0] else ".png"
        )
        if frame not in no_output:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            write_frame(path, frame, FORMAT[0])
        for node in file_outputs:
            for slot in node.file_slots:
                extra = file_output_path(node.base_path, slot.path, frame, scene)
                try:
                    os.makedirs(os.path.dirname(extra), exist_ok=True)
                    with open(extra, "wb") as fh:
                        fh.write(png_bytes(8, 8, frame))
                except OSError as exc:
                    print(f"Error: Could not write image file {extra}: {exc.strerror}", flush=True)
        if log:
            with open(log, "a") as fh:
                fh.write(f"{frame}\n")
        if old_saved:
            print(f"Saved: {path} Time: 00:00.10 (Saving: 00:00.00)", flush=True)
        else:
            print(f"Saved: '{path}'", flush=True)
            print(" Time: 00:00.10 (Saving: 00:00.00)", flush=True)
        print("", flush=True)
    print("\nBlender quit", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
