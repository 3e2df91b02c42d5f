"""Where collected frames live: data_dir/renders/<job>/frame_00001.png. Pure path rules; a job
id only becomes part of a path once `check_job_id` has passed it."""

from __future__ import annotations

from pathlib import Path

from farm_common.paths import check_job_id
from farm_common.protocol import frame_name, image_format


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
