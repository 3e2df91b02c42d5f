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

from farm_common.protocol import ImageFormat, frame_name, frame_pattern


def output_pattern(output_dir: Path) -> str:
    return str(output_dir / frame_pattern())


def output_file(output_dir: Path, frame: int, fmt: ImageFormat) -> Path:
    """Where Blender writes `frame` for the pattern `output_pattern(output_dir)`."""
    return output_dir / frame_name(frame, fmt.extension)


# Freestyle runs Python (its style modules) from the .blend even with auto-exec off. This
# check is our code, not the file's: it runs after the .blend is loaded and before any render
# argument, and ends Blender with an `Error:` line the node reports for every frame.
FREESTYLE_EXIT_CODE = 3
FREESTYLE_CHECK = (
    "import sys, bpy\n"
    "_fs = [s.name for s in bpy.data.scenes if s.render.use_freestyle]\n"
    "if _fs:\n"
    "    print('Error: Freestyle is enabled in scene ' + ', '.join(map(repr, _fs)) + '; it runs"
    " Python from the .blend, so this node refuses it: disable Freestyle (Properties > Render >"
    " Freestyle) or start the node with --allow-freestyle', flush=True)\n"
    f"    sys.exit({FREESTYLE_EXIT_CODE})\n"
)


# Only `-o` goes through the command line: a compositor File Output node keeps its own path,
# and a cache written while rendering lands next to the .blend (in the node's scene store) or
# wherever its path says. This guard, our code run after the .blend is loaded, points them all
# into the job's folder, for every scene and node group (Blender 3.x-4.x and 5.x names alike),
# and prints what it moved. The sandbox below it holds whatever it misses.
SCENE_GUARD = """\
import os, re, bpy
_root = {root!r}

def _folder(kind, n):
    path = os.path.join(_root, '%s_%d' % (kind, n)) + os.sep
    os.makedirs(path, exist_ok=True)
    return path

def _name(path, fallback):
    if not re.search(r'[\\\\/]', path or '') and not (path or '').startswith('.'):
        return path  # a plain name stays as the artist gave it
    parts = [p for p in re.split(r'[\\\\/]+', path) if p not in ('', '.', '..')]
    name = re.sub(r'[^A-Za-z0-9_#.-]', '_', '_'.join(parts)).lstrip('.')
    return name or fallback

for _scene in bpy.data.scenes:
    # `-o frame_#####` is completed by the extension: without it the frame has no name we know.
    if not getattr(_scene.render, 'use_file_extension', True):
        _scene.render.use_file_extension = True
        print('farm: scene %r saves frames with their file extension' % _scene.name, flush=True)

_trees = list(bpy.data.node_groups)
for _scene in bpy.data.scenes:
    _tree = getattr(_scene, 'node_tree', None)
    if _tree is not None and _tree not in _trees:
        _trees.append(_tree)
_n = 0
for _tree in _trees:
    for _node in _tree.nodes:
        if _node.bl_idname != 'CompositorNodeOutputFile':
            continue
        _n += 1
        _to = _folder('file_output', _n)
        for _attr in ('base_path', 'directory'):
            if hasattr(_node, _attr):
                setattr(_node, _attr, _to)
        if hasattr(_node, 'file_name'):
            _node.file_name = _name(_node.file_name, 'image_')
        for _slot in getattr(_node, 'file_slots', ()):
            _slot.path = _name(_slot.path, 'image_')
        print('farm: File Output node %r of %r writes into %s'
              % (_node.name, _tree.name, _to), flush=True)

def _memory_only(cache, what):
    if getattr(cache, 'use_disk_cache', False) and not getattr(cache, 'is_baked', True):
        cache.use_disk_cache = False
        print('farm: %s caches in memory, not on disk' % what, flush=True)

_c = 0
for _scene in bpy.data.scenes:
    _world = getattr(_scene, 'rigidbody_world', None)
    if _world is not None and getattr(_world, 'point_cache', None) is not None:
        _memory_only(_world.point_cache, 'rigid body world of %r' % _scene.name)
for _ob in bpy.data.objects:
    for _mod in getattr(_ob, 'modifiers', ()):
        _what = 'modifier %r of %r' % (_mod.name, _ob.name)
        if getattr(_mod, 'point_cache', None) is not None:
            _memory_only(_mod.point_cache, _what)
        _ps = getattr(_mod, 'particle_system', None)
        if _ps is not None and getattr(_ps, 'point_cache', None) is not None:
            _memory_only(_ps.point_cache, _what)
        _canvas = getattr(_mod, 'canvas_settings', None)
        for _surface in getattr(_canvas, 'canvas_surfaces', ()) if _canvas else ():
            _memory_only(_surface.point_cache, _what)
        _domain = getattr(_mod, 'domain_settings', None)
        if getattr(_mod, 'fluid_type', '') == 'DOMAIN' and _domain is not None:
            if getattr(_domain, 'cache_type', '') == 'REPLAY':
                _c += 1
                _domain.cache_directory = _folder('fluid_cache', _c)
                print('farm: fluid cache of %s goes into %s'
                      % (_what, _domain.cache_directory), flush=True)
"""


# Blender renders on when a file the scene needs is gone: a linked library leaves its objects
# out, a texture renders magenta, and it still prints `Saved:` and exits 0. This check, our
# code run after the .blend is loaded, lists every library, image, cache, volume, font, sound
# and clip whose file is not there (libraries of libraries resolved from their parent) as
# `farm: missing KIND 'PATH'` lines; unless the job accepts them, it ends Blender before any
# frame with one `Error:` line that names them.
MISSING_EXIT_CODE = 4
ASSET_CHECK = """\
import os, re, sys, bpy

def _abs(path, owner):
    lib = getattr(owner, 'library', None) or getattr(owner, 'parent', None)
    return os.path.normpath(bpy.path.abspath(path, library=lib))

def _files(kind, owner, path):
    if not path:
        return []
    full = _abs(path, owner)
    if kind == 'image' and owner.source == 'TILED' and '<UDIM>' in full:
        return [full.replace('<UDIM>', str(t.number)) for t in owner.tiles]
    return [full]

_missing = []
def _check(kind, owner, path):
    for full in _files(kind, owner, path):
        if not os.path.exists(full):
            _missing.append((kind, full))

for _lib in bpy.data.libraries:
    _check('library', _lib, _lib.filepath)
for _img in bpy.data.images:
    # A sequence is checked frame by frame, below: its first file says nothing of the others.
    if _img.source in ('FILE', 'TILED', 'MOVIE') and not _img.packed_file:
        _check('image', _img, _img.filepath)
for _kind, _items in (('cache', 'cache_files'), ('volume', 'volumes'), ('sound', 'sounds'),
                      ('movie clip', 'movieclips'), ('font', 'fonts')):
    for _item in getattr(bpy.data, _items, ()):
        _path = getattr(_item, 'filepath', '')
        if _path and _path != '<builtin>' and not getattr(_item, 'packed_file', None):
            _check(_kind, _item, _path)

# An image sequence is read a file per frame: which one, only the frame being rendered says.
def _sequence_file(path, number):
    head, tail = os.path.split(path)
    digits = list(re.finditer(r'[0-9]+', tail))
    if not digits:
        return path
    d = digits[-1]
    return os.path.join(head, tail[:d.start()] + str(number).zfill(len(d.group())) + tail[d.end():])

def _sequence_frame(user, frame):  # Blender's BKE_image_user_frame_get
    length = user.frame_duration
    if length == 0:
        return None
    f = frame - user.frame_start + 1
    if user.use_cyclic:
        f = f % length
        f = f + length if f < 0 else f
        f = length if f == 0 else f
    return max(0, min(f, length)) + user.frame_offset

def _check_sequences(scene, *args):
    frame = scene.frame_current
    owners = [getattr(bpy.data, n, ()) for n in ('materials', 'worlds', 'lights')]
    trees = [o.node_tree for items in owners for o in items if getattr(o, 'node_tree', None)]
    for tree in trees + list(bpy.data.node_groups):
        for node in tree.nodes:
            image, user = getattr(node, 'image', None), getattr(node, 'image_user', None)
            if image is None or user is None or image.source != 'SEQUENCE' or image.packed_file:
                continue
            number = _sequence_frame(user, frame)
            full = _sequence_file(_abs(image.filepath, image), number) if number else None
            if full and not os.path.exists(full):
                print('farm: missing image %r (frame %d)' % (full, frame), flush=True)

bpy.app.handlers.render_pre.append(_check_sequences)

_seen = set()
for _kind, _full in _missing:
    if _full not in _seen:
        _seen.add(_full)
        print('farm: missing %s %r' % (_kind, _full), flush=True)
if _missing and not {allow}:
    _names = ', '.join('%s %s' % (k, p) for k, p in _missing[:20])
    _more = ' and %d more' % (len(_missing) - 20) if len(_missing) > 20 else ''
    print('Error: %d file(s) the scene needs are missing: %s%s. Submit the shot with '
          '`farm render`, which packs every dependency, or accept them with allow_missing'
          % (len(_seen), _names, _more), flush=True)
    sys.exit({exit_code})
"""


# Shared storage mounted at another place on this node: the scene's absolute paths under FROM
# are read under TO (libraries loaded again from there). Runs before the asset check.
PATH_MAP = """\
import os, bpy
_map = {pairs!r}

def _mapped(path):
    if not path or path.startswith('//'):
        return None  # relative to the .blend: it moves with it
    for _from, _to in _map:
        _from = _from.rstrip('/')
        if path == _from or path.startswith(_from + '/'):
            return _to.rstrip('/') + path[len(_from):]
    return None

for _lib in bpy.data.libraries:
    _new = _mapped(_lib.filepath)
    if _new:
        print('farm: library %r read from %r (--path-map)' % (_lib.filepath, _new), flush=True)
        _lib.filepath = _new
        _lib.reload()
for _items in ('images', 'cache_files', 'volumes', 'sounds', 'movieclips', 'fonts'):
    for _item in getattr(bpy.data, _items, ()):
        _new = _mapped(getattr(_item, 'filepath', ''))
        if _new and not getattr(_item, 'library', None):
            print('farm: %r read from %r (--path-map)' % (_item.filepath, _new), flush=True)
            _item.filepath = _new
"""


def path_map_expr(pairs: Sequence[tuple[str, str]]) -> str:
    return PATH_MAP.format(pairs=[tuple(pair) for pair in pairs])


def asset_check(allow_missing: bool) -> str:
    """The `--python-expr` that lists the scene's missing files (and stops unless allowed)."""
    return ASSET_CHECK.format(allow=allow_missing, exit_code=MISSING_EXIT_CODE)


def scene_guard(root: Path) -> str:
    """The `--python-expr` that points the scene's other writers into `root`."""
    return SCENE_GUARD.format(root=str(root))


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
) -> list[str]:
    """Blender runs its arguments in order: the .blend first, output options, render args last.

    `--disable-autoexec` is applied before any file is loaded, wherever it stands.
    `guard_dir`: where the scene guard sends File Output nodes and caches (none: no guard).
    `set_format`: pass `-F fmt`; without it the scene's own output settings hold (format,
    depth, codec, layers) and `fmt` only names what it writes.
    """
    check = [] if allow_freestyle else ["--python-expr", FREESTYLE_CHECK]
    guard = [] if guard_dir is None else ["--python-expr", scene_guard(guard_dir)]
    assets = ["--python-expr", asset_check(allow_missing)]
    if path_map:
        assets = ["--python-expr", path_map_expr(path_map), *assets]
    return [
        blender,
        "-b",
        str(scene_path),
        "--disable-autoexec",
        *check,
        *assets,
        *guard,
        "-o",
        output_pattern(output_dir),
        *(["-F", fmt.name] if set_format else []),
        "-t",
        str(threads),
        *blender_frame_args(frames),
    ]


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
