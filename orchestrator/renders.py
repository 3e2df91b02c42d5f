"""Where collected frames live: data_dir/renders/<job>/frame_00001.png. Pure path rules; a job
id only becomes part of a path once `check_job_id` has passed it."""

from __future__ import annotations

from pathlib import Path

from farm_common.paths import check_job_id

SUFFIXES = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "OPEN_EXR": ".exr",
    "OPEN_EXR_MULTILAYER": ".exr",
    "EXR": ".exr",
    "TIFF": ".tif",
    "BMP": ".bmp",
    "TARGA": ".tga",
    "WEBP": ".webp",
}

MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".exr": "image/x-exr",
    ".tif": "image/tiff",
    ".bmp": "image/bmp",
    ".tga": "image/x-tga",
    ".webp": "image/webp",
}


def output_suffix(fmt: str) -> str:
    return SUFFIXES.get(fmt.upper(), ".png")


def frame_name(frame: int, suffix: str) -> str:
    return f"frame_{frame:05d}{suffix}"


def output_path(renders_dir: Path, job_id: str, frame: int, suffix: str) -> Path:
    return renders_dir / check_job_id(job_id) / frame_name(frame, suffix)


def part_path(dest: Path, batch_id: str) -> Path:
    """The temp file a download goes to before its atomic rename (hidden, per batch)."""
    return dest.with_name(f".{dest.name}.{batch_id}.part")


def video_path(renders_dir: Path, job_id: str) -> Path:
    """The job's preview video, next to its frames."""
    return renders_dir / check_job_id(job_id) / "video.mp4"
