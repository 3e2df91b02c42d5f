"""Prints where an opened .blend file's outside dependencies point, and whether they are there.

Not a pytest test: run it inside Blender, on any shot, e.g.
    blender -b scenes/shot/shots/010/shot.blend --python tests/real_shot_check.py
It renders nothing. Every path is printed as stored (relative paths start with //) and as
resolved; a linked library's own images resolve against that library's folder, not the shot's.
Blender exits 0 whatever it finds; the last line tells whether anything is missing.
"""

import os

import bpy


def resolve(path: str, library: bpy.types.Library | None) -> str:
    return os.path.normpath(bpy.path.abspath(path, library=library))


def report(kind: str, name: str, stored: str, library: bpy.types.Library | None) -> bool:
    resolved = resolve(stored, library)
    exists = os.path.exists(resolved)
    print(f"{kind:<8} {name!r}: {stored} -> {resolved} exists={exists}")
    return exists


def image_paths(image: bpy.types.Image) -> list[str]:
    """A sequence's filepath names one frame; its frames are the files that share its pattern."""
    if image.source != "SEQUENCE":
        return [image.filepath]
    head, tail = os.path.split(image.filepath)
    stem, ext = os.path.splitext(tail)
    digits = len(stem) - len(stem.rstrip("0123456789"))
    prefix = stem[: len(stem) - digits]
    folder = resolve(head or "//", image.library)
    names = os.listdir(folder) if os.path.isdir(folder) else []
    frames = sorted(name for name in names if name.startswith(prefix) and name.endswith(ext))
    return [os.path.join(head, name) for name in frames] or [image.filepath]


def main() -> None:
    print("blend", bpy.data.filepath)
    missing = 0
    for library in bpy.data.libraries:
        missing += not report("library", library.name, library.filepath, None)
    for image in bpy.data.images:
        if image.source not in {"FILE", "SEQUENCE", "MOVIE", "TILED"} or image.packed_file:
            print(f"image    {image.name!r}: source={image.source} (no file on disk)")
            continue
        print(f"image    {image.name!r}: source={image.source} filepath={image.filepath}")
        for path in image_paths(image):
            missing += not report("  file", image.name, path, image.library)
    for cache in bpy.data.cache_files:
        missing += not report("cache", cache.name, cache.filepath, cache.library)
    print(f"alembic supported by this Blender: {bpy.app.alembic.supported}")
    print("missing:", missing)


main()
