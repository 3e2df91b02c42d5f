"""The one place where user strings become filesystem paths, the id patterns that guard it,
and the check of a sha256 that names a stored file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from fastapi import Path as PathParam
from pydantic import BeforeValidator

from farm_common.errors import BadRequest
from farm_common.frames import MAX_FRAME_DIGITS, MAX_FRAME_NUMBER
from farm_common.tiles import MAX_TILES

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCENE_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_. -]{0,200}\.blend$")


# Path parameters as the OpenAPI schema describes them. The patterns are documentation (and
# guide fuzzers to real-looking ids); the check_* functions below are what enforces them, with
# a 400 that says what is wrong.
JobId = Annotated[
    str,
    PathParam(
        description="a job id: letters, digits, '-' and '_'",
        json_schema_extra={"pattern": JOB_ID_RE.pattern},
    ),
]
Sha256 = Annotated[
    str,
    PathParam(
        description="the sha256 of the .blend, 64 hex digits",
        json_schema_extra={"pattern": SHA256_RE.pattern},
    ),
]


def _frame_digits(value: object) -> object:
    """Refuse a long number before it is read: past 4,300 digits int() gives up, and
    pydantic's own message does not say which frames there are."""
    if isinstance(value, str) and len(value.strip().lstrip("+-")) > MAX_FRAME_DIGITS:
        raise ValueError(
            f"a frame number has at most {MAX_FRAME_DIGITS} digits: "
            f"Blender's last frame is {MAX_FRAME_NUMBER}"
        )
    return value


# The validator after the Path(): before it, FastAPI writes `ge`/`le` into the OpenAPI schema
# instead of `minimum`/`maximum`.
FrameNumber = Annotated[
    int,
    PathParam(ge=0, le=MAX_FRAME_NUMBER, description="a frame number of the job"),
    BeforeValidator(_frame_digits),
]


TileNumber = Annotated[
    int,
    PathParam(ge=0, lt=MAX_TILES, description="a region of the frame, 0 at the top left"),
    BeforeValidator(_frame_digits),
]


def check_sha256(value: str) -> str:
    value = value.lower().removeprefix("sha256:")
    if not SHA256_RE.fullmatch(value):
        raise BadRequest(f"{value[:80]!r} is not a sha256: give 64 hex digits")
    return value


def check_job_id(value: str) -> str:
    if not JOB_ID_RE.fullmatch(value):
        raise BadRequest(f"{value[:80]!r} is not a job id: letters, digits, '-' and '_' only")
    return value


def scene_path(scenes_dir: Path, name: str) -> Path:
    """Resolve a scene name under `scenes_dir`, refusing absolute paths and `..`.

    Sub-folders are allowed ("shots/010.blend"); the result must stay inside `scenes_dir`.
    """
    if not name or name.startswith(("/", "\\")) or "\\" in name or "\x00" in name:
        raise BadRequest(f"scene {name[:80]!r} must be a relative name under the scenes folder")
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise BadRequest(f"scene {name[:80]!r} must not contain '..', '.' or empty parts")
    if not all(
        SCENE_NAME_RE.fullmatch(p) or (i < len(parts) - 1 and re.fullmatch(r"[\w. -]+", p))
        for i, p in enumerate(parts)
    ):
        raise BadRequest(f"scene {name[:80]!r} must be a .blend file name (letters, digits, ._- )")
    root = scenes_dir.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise BadRequest(f"scene {name[:80]!r} points outside the scenes folder")
    return path
