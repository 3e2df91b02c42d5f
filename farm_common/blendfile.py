"""What a .blend says about its own output, read from the file (blender-asset-tracer reads its
blocks by name, in every Blender version's layout, without running Blender)."""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import zstandard
from blender_asset_tracer import blendfile

log = logging.getLogger(__name__)
T = TypeVar("T")

# Blender's R_IMF_IMTYPE_* (DNA_scene_types.h) -> our format names (protocol.FORMATS).
IMTYPES: dict[int, str] = {
    0: "TARGA",
    1: "IRIS",
    4: "JPEG",
    14: "TARGA_RAW",
    17: "PNG",
    20: "BMP",
    21: "HDR",
    22: "TIFF",
    23: "OPEN_EXR",
    26: "CINEON",
    27: "DPX",
    28: "OPEN_EXR_MULTILAYER",
    30: "JPEG2000",
    35: "WEBP",
}
MOVIE_IMTYPES = frozenset({15, 16, 24, 31, 32, 33, 36})  # AVI, FFmpeg, H.264, Xvid, Theora, AV1


class SceneFormatError(ValueError):
    """The scene's own output format is not one the farm can collect frame by frame."""


def _read_scene(path: Path, read: Callable[[blendfile.BlendFileBlock], T]) -> T | None:
    """`read` of the .blend's current scene block; None when the file cannot be read this
    way (not a .blend, no scene, a layout `read` does not know)."""
    try:
        bfile = blendfile.BlendFile(path)
    except Exception as exc:  # BAT raises what the file's bytes make it raise
        log.warning("cannot read %s's render settings: %r", path, exc)
        return None
    try:
        scene = _scene_block(bfile)
        return None if scene is None else read(scene)
    except Exception as exc:
        log.warning("cannot read %s's render settings: %r", path, exc)
        return None
    finally:
        bfile.close()


def _render_settings(path: Path, *fields: tuple[bytes, ...]) -> list[int] | None:
    """`fields` of the .blend's current scene's render settings (paths under its `r`), as
    ints; None when the file cannot be read this way."""
    return _read_scene(path, lambda scene: [int(scene[(b"r", *field)]) for field in fields])


def scene_resolution(path: Path) -> tuple[int, int] | None:
    """The size in pixels of the frames the .blend's current scene renders (resolution times
    its percentage, as Blender computes it); None when the file cannot be read this way."""
    read = _render_settings(path, (b"xsch",), (b"ysch",), (b"size",))
    if read is None:
        return None
    width, height, percent = read
    return width * percent // 100, height * percent // 100


def _scene_block(bfile: blendfile.BlendFile) -> blendfile.BlendFileBlock | None:
    globals_ = bfile.find_blocks_from_code(b"GLOB")
    scene = globals_[0].get_pointer(b"curscene") if globals_ else None
    if scene is None:
        scenes = bfile.find_blocks_from_code(b"SC")
        scene = scenes[0] if scenes else None
    return scene


def _id_property(
    block: blendfile.BlendFileBlock, holders: tuple[Any, ...], group: bytes, name: bytes
) -> int | None:
    """An int property `name` in the ID property group `group` of `block`, looked up under
    each of `holders` in turn (add-on settings such as Cycles' live there: in
    `system_properties` since Blender 5.0, in `properties`/`id_properties` before)."""
    for holder in holders:
        try:
            props = block.get_pointer(holder)
        except KeyError:
            continue
        item = None if props is None else props.get_pointer((b"data", b"group", b"first"))
        while item is not None:
            if item[b"name"] == group:
                entry = item.get_pointer((b"data", b"group", b"first"))
                while entry is not None:
                    if entry[b"name"] == name:
                        return int(entry[(b"data", b"val")])
                    entry = entry.get_pointer(b"next")
                return None
            item = item.get_pointer(b"next")
    return None


_SCENE_PROPS = ((b"id", b"system_properties"), (b"id", b"properties"))
_LAYER_PROPS = (b"system_properties", b"id_properties")


def _denoises(scene: blendfile.BlendFileBlock) -> bool:
    if scene[(b"r", b"engine")] != b"CYCLES":
        return False
    if _id_property(scene, _SCENE_PROPS, b"cycles", b"use_denoising") == 0:
        return False
    # And a view layer that denoises (each has its own switch, on by default).
    layer = scene.get_pointer((b"view_layers", b"first"))
    while layer is not None:
        if _id_property(layer, _LAYER_PROPS, b"cycles", b"use_denoising") != 0:
            return True
        layer = layer.get_pointer(b"next")
    return False


def scene_denoises(path: Path) -> bool | None:
    """Whether the .blend's current scene renders with Cycles' denoiser: on for the scene and
    for one of its view layers (Cycles' default, unless the file turns it off); None when the
    file cannot be read this way."""
    return _read_scene(path, _denoises)


# Cycles' samples when the file does not set them (its default since Blender 3.0).
CYCLES_DEFAULT_SAMPLES = 4096


class CyclesScene(NamedTuple):
    engine: str  # "CYCLES", "BLENDER_EEVEE_NEXT", ...
    samples: int  # Cycles' render samples (the default where the file does not set them)
    denoises: bool


def _cycles(scene: blendfile.BlendFileBlock) -> CyclesScene:
    engine = scene[(b"r", b"engine")]
    samples = _id_property(scene, _SCENE_PROPS, b"cycles", b"samples")
    return CyclesScene(
        engine.decode("ascii", "replace") if isinstance(engine, bytes) else str(engine),
        CYCLES_DEFAULT_SAMPLES if samples is None else samples,
        _denoises(scene),
    )


def scene_cycles(path: Path) -> CyclesScene | None:
    """The .blend's current scene's engine, Cycles samples and denoising; None when the file
    cannot be read this way."""
    return _read_scene(path, _cycles)


def scene_quality(path: Path) -> int | None:
    """The JPEG quality (0-100) of the .blend's current scene's output; None when the file
    cannot be read this way."""
    read = _render_settings(path, (b"im_format", b"quality"))
    return None if read is None else read[0]


def scene_image_format(path: Path) -> str | None:
    """The image format the .blend's current scene renders to (its Output properties); None
    when the file cannot be read this way. Raises SceneFormatError for a movie format."""
    read = _render_settings(path, (b"im_format", b"imtype"))
    if read is None:
        return None
    (imtype,) = read
    if imtype in MOVIE_IMTYPES:
        raise SceneFormatError(
            "the scene's output is a movie file; a farm renders frames: choose an image format "
            "in Output Properties, or ask for one (format, e.g. PNG or OPEN_EXR)"
        )
    return IMTYPES.get(imtype)


# "BLENDER-v304" (pointer size, endianness, version 3.04) before Blender 5.0; "BLENDER17-01v0500"
# (header size 17, header format 1, version 5.00) since.
_HEADER = re.compile(
    rb"^BLENDER(?:[_-][vV](?P<old>[0-9]{3})|[0-9]{2}-[0-9]{2}[vV](?P<new>[0-9]{4}))"
)
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
HEADER_BYTES = 32


def saved_by(path: Path) -> tuple[int, int] | None:
    """The Blender version (major, minor) that saved the .blend, from its header (gzip- or
    zstd-compressed files are opened as Blender opens them); None when it has no such header."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
            fh.seek(0)
            if magic.startswith(GZIP_MAGIC):
                with gzip.GzipFile(fileobj=fh) as unzipped:
                    head = unzipped.read(HEADER_BYTES)
            elif magic == ZSTD_MAGIC:
                with zstandard.ZstdDecompressor().stream_reader(fh) as unzipped:
                    head = unzipped.read(HEADER_BYTES)
            else:
                head = fh.read(HEADER_BYTES)
    except (OSError, EOFError, zstandard.ZstdError):
        return None
    match = _HEADER.match(head)
    if match is None:
        return None
    if match["old"]:
        return int(match["old"][:1]), int(match["old"][1:])
    return int(match["new"][:2]), int(match["new"][2:])


def opens(blender: str | None, saved: tuple[int, int] | None) -> bool:
    """Whether a Blender of version `blender` ("3.4.1") opens a file `saved` by (major, minor)
    correctly: an older Blender cannot open a newer file, or opens it wrong. True when
    either is unknown."""
    if saved is None or not blender:
        return True
    try:
        ours = tuple(int(part) for part in blender.split(".")[:2])
    except ValueError:
        return True
    return saved <= ours
