"""Our code that Blender runs inside itself (`--python-expr`), after the .blend is loaded and
before any frame: the Freestyle refusal, the path map, the missing-file check and the scene
guard. Each is a Python source text (it runs in Blender's Python, not ours) and a function
that fills it in. Blender runs them in the order given on its command line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
