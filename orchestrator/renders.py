"""Where collected frames live: data_dir/renders/<job>/frame_00001.png, a tiled job's regions
under <job>/tiles/frame_00001/ until the frame is stitched. Path rules, and what is on disk
after a restart; a job id only becomes part of a path once `check_job_id` has passed it."""

from __future__ import annotations

import os
import re
from pathlib import Path

from farm_common.paths import check_job_id
from farm_common.protocol import (
    FRAME_DIGITS,
    FRAME_STEM,
    frame_name,
    image_format,
    parse_frame_name,
)
from farm_common.tiles import unit, unit_frame, unit_tile

_TILE_FILE = re.compile(r"^tile_(\d{3})\.[A-Za-z0-9]{1,8}$")
_FRAME_FOLDER = re.compile(rf"^{FRAME_STEM}(\d{{{FRAME_DIGITS},}})$")  # tiles_dir's names


def output_suffix(fmt: str) -> str:
    """The file suffix of a job's frames, from its image format ("OPEN_EXR" -> ".exr")."""
    return image_format(fmt).extension


def output_path(renders_dir: Path, job_id: str, frame: int, suffix: str) -> Path:
    return renders_dir / check_job_id(job_id) / frame_name(frame, suffix)


def part_path(dest: Path, batch_id: str) -> Path:
    """The temp file a download goes to before its atomic rename (hidden, per batch)."""
    return dest.with_name(f".{dest.name}.{batch_id}.part")


def video_path(renders_dir: Path, job_id: str) -> Path:
    """The job's preview video, next to its frames."""
    return renders_dir / check_job_id(job_id) / "video.mp4"


# Formats a frame can be split in: those the stitcher writes exactly. A JPEG frame's regions
# are rendered as PNG and encoded once, whole (a JPEG of JPEGs would be compressed twice).
TILED_FORMATS = ("PNG", "JPEG", "TIFF", "OPEN_EXR", "OPEN_EXR_MULTILAYER")


def tile_format(fmt: str) -> str:
    """The format nodes render a tiled job's regions in, for frames in `fmt`."""
    return "PNG" if fmt == "JPEG" else fmt


PART_FORMAT = "OPEN_EXR"  # a sample split's parts: linear light in float, whatever the frame's


def piece_format(fmt: str, tiles: int, sample_parts: int) -> str:
    """The format a unit of a job whose frames are in `fmt` is rendered in: the frame's, a
    region's (tile_format) or a sample part's."""
    if sample_parts > 1:
        return PART_FORMAT
    return tile_format(fmt) if tiles > 1 else fmt


def tiles_dir(renders_dir: Path, job_id: str, frame: int) -> Path:
    """Where a frame's regions wait for the rest of them: removed once it is stitched."""
    return renders_dir / check_job_id(job_id) / "tiles" / frame_name(frame, "")


def collected_units(renders_dir: Path, job_id: str, tiles: int) -> set[int]:
    """The units of the job (its frames, or for a tiled job each frame's regions) whose files
    are on disk. A frame whose regions are all in but that is not stitched keeps its last one
    out: rendering it again stitches the frame."""
    folder = renders_dir / check_job_id(job_id)
    units: set[int] = set()
    names = os.listdir(folder) if folder.is_dir() else []
    for name in names:
        parsed = parse_frame_name(name)
        if parsed is not None:
            units.update(unit(parsed[0], t) for t in range(tiles))
    if tiles == 1 or not (folder / "tiles").is_dir():
        return units
    for name in os.listdir(folder / "tiles"):
        named = _FRAME_FOLDER.match(name)
        if named is None:
            continue
        frame = int(named.group(1))
        found = {
            int(match.group(1))
            for match in map(_TILE_FILE.match, os.listdir(folder / "tiles" / name))
            if match and int(match.group(1)) < tiles
        }
        if len(found) == tiles:
            found.discard(tiles - 1)
        units.update(unit(frame, t) for t in found)
    return units


def tile_path(renders_dir: Path, job_id: str, frame: int, tile: int, suffix: str) -> Path:
    return tiles_dir(renders_dir, job_id, frame) / f"tile_{tile:03d}{suffix}"


def forget_units(
    renders_dir: Path, job_id: str, units: list[int], fmt: str, tiles: int, sample_parts: int
) -> None:
    """Delete the files of `units` of a job whose frames are in `fmt` (split in `tiles`
    regions or `sample_parts` parts), to be rendered again: the frame each belongs to, and
    the unit's own piece of it; and the job's video, made from frames that change."""
    pieces = tiles * sample_parts
    piece_suffix = output_suffix(piece_format(fmt, tiles, sample_parts))
    for one in units:
        frame = unit_frame(one)
        output_path(renders_dir, job_id, frame, output_suffix(fmt)).unlink(missing_ok=True)
        if pieces > 1:
            tile_path(renders_dir, job_id, frame, unit_tile(one), piece_suffix).unlink(
                missing_ok=True
            )
    video_path(renders_dir, job_id).unlink(missing_ok=True)
