"""The wire between orchestrator and render node: one definition of every word that crosses it.

The node's API answers with these models, the orchestrator's node client reads answers into
them, and the test fake serves them; a test holds the fake against the node's OpenAPI schema.
States are enums (a `StrEnum` member equals its string, so SQL and JSON see plain text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from farm_common.errors import BadRequest
from farm_common.frames import MAX_FRAME_NUMBER, MAX_FRAMES
from farm_common.manifest import Manifest, Sha256
from farm_common.tiles import (
    MAX_MARGIN,
    MAX_TILES,
    Border,
    Box,
    border,
    box_border,
    core_box,
    margin_box,
)


class JobState(StrEnum):
    """A render job's state: the node's job for a batch, and the orchestrator's job alike."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})


class FrameState(StrEnum):
    PENDING = "pending"
    RENDERING = "rendering"
    DONE = "done"
    FAILED = "failed"


class BatchState(StrEnum):
    """An orchestrator batch: waiting, on a node, or how its run on a node ended."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    LOST = "lost"  # the node stopped answering or forgot the job: frames go back, uncounted
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # running when the orchestrator stopped


# --- image formats ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageFormat:
    name: str  # Blender's -F value
    extension: str
    content_type: str


FORMATS: dict[str, ImageFormat] = {
    f.name: f
    for f in (
        ImageFormat("PNG", ".png", "image/png"),
        ImageFormat("JPEG", ".jpg", "image/jpeg"),
        ImageFormat("JPEG2000", ".jp2", "image/jp2"),
        ImageFormat("BMP", ".bmp", "image/bmp"),
        ImageFormat("TIFF", ".tif", "image/tiff"),
        ImageFormat("OPEN_EXR", ".exr", "image/x-exr"),
        ImageFormat("OPEN_EXR_MULTILAYER", ".exr", "image/x-exr"),
        ImageFormat("HDR", ".hdr", "image/vnd.radiance"),
        ImageFormat("TARGA", ".tga", "image/x-tga"),
        ImageFormat("TARGA_RAW", ".tga", "image/x-tga"),
        ImageFormat("WEBP", ".webp", "image/webp"),
        ImageFormat("CINEON", ".cin", "image/cineon"),
        ImageFormat("DPX", ".dpx", "image/x-dpx"),
        ImageFormat("IRIS", ".rgb", "image/x-rgb"),
    )
}
FORMAT_ALIASES = {"JPG": "JPEG", "EXR": "OPEN_EXR", "TIF": "TIFF", "TGA": "TARGA"}
CONTENT_TYPES = {f.extension: f.content_type for f in FORMATS.values()}
EXTENSIONS = {f.content_type: f.extension for f in reversed(FORMATS.values())}  # first wins


def image_format(name: str) -> ImageFormat:
    """The format for a user-given name (case-insensitive, a few aliases); 400 if unknown."""
    key = name.strip().upper()
    key = FORMAT_ALIASES.get(key, key)
    try:
        return FORMATS[key]
    except KeyError:
        known = ", ".join(FORMATS)
        raise BadRequest(f"unknown image format {name[:40]!r}: use one of {known}") from None


# --- frame files -----------------------------------------------------------------------------

FRAME_STEM = "frame_"
FRAME_DIGITS = 5
_FRAME_FILE = re.compile(rf"^{FRAME_STEM}(\d{{{FRAME_DIGITS},}})(\.[A-Za-z0-9]{{1,8}})$")


def frame_name(frame: int, suffix: str) -> str:
    """`frame_00003.png`: a frame's file name on the node, in frames.tar and when collected."""
    return f"frame_{frame:05d}{suffix}"  # FRAME_STEM, FRAME_DIGITS


def frame_pattern() -> str:
    """The name Blender's `-o` is given: it fills the #s with the frame number."""
    return FRAME_STEM + "#" * FRAME_DIGITS


def frame_printf_pattern(suffix: str) -> str:
    """The file names of a job's frames as a printf pattern, as ffmpeg's image2 reads them."""
    return f"{FRAME_STEM}%0{FRAME_DIGITS}d{suffix}"


def parse_frame_name(name: str) -> tuple[int, str] | None:
    """`frame_00003.png` -> (3, ".png"); None for any other name."""
    match = _FRAME_FILE.fullmatch(name)
    if match is None:
        return None
    return int(match.group(1)), match.group(2)


# --- frames.tar and long polls ---------------------------------------------------------------

# At most this many frames per archive: bounds one request's work and its URL (a spec of 500
# scattered 7-digit frames is 4 KB; servers refuse request lines much past 8-16 KB).
MAX_ARCHIVE_FRAMES = 500
ARCHIVE_MEDIA_TYPE = "application/x-tar"
# GET /jobs/{id}?wait=S&since=V answers as soon as the job's version differs from V, or after
# S seconds (at most this many).
MAX_WAIT_SECONDS = 10.0


# --- models ----------------------------------------------------------------------------------


class Request(BaseModel):
    """A request body: an unknown field is refused (422 naming it), never silently dropped."""

    model_config = ConfigDict(extra="forbid")


Pixels = Annotated[int, Field(ge=1, le=65536)]
MAX_SAMPLES = 1 << 24  # Cycles takes at most 16,777,216 samples
MAX_DEVELOP_FRAMES = 1000  # frames one develop request finishes (a batch's)


class Tile(Request):
    """One region of a frame split in a grid (farm_common/tiles.py): rendered with Blender's
    border and crop, the image holds that region alone."""

    cols: int = Field(ge=1, le=MAX_TILES)
    rows: int = Field(ge=1, le=MAX_TILES)
    col: int = Field(ge=0, lt=MAX_TILES, description="from the left, 0 first")
    row: int = Field(ge=0, lt=MAX_TILES, description="from the top, 0 first")
    margin: int = Field(
        default=0,
        ge=0,
        le=MAX_MARGIN,
        description="pixels rendered around the region, inside the frame (for a denoiser); "
        "then the grid is cut in whole pixels of `size`, which must be given",
    )
    size: tuple[Pixels, Pixels] | None = Field(
        default=None, description="the frame's width and height in pixels (with a margin)"
    )

    @model_validator(mode="after")
    def _inside(self) -> Tile:
        if self.cols * self.rows > MAX_TILES:
            raise ValueError(f"at most {MAX_TILES} regions a frame")
        if self.margin and self.size is None:
            raise ValueError("a tile with a margin needs the frame's size")
        self.border()  # raises for a region outside the grid
        return self

    def box(self) -> Box | None:
        """With a margin, the pixels rendered (the region and its margin); else None."""
        if not self.margin or self.size is None:
            return None
        width, height = self.size
        core = core_box(self.cols, self.rows, self.col, self.row, width, height)
        return margin_box(core, self.margin, width, height)

    def border(self) -> Border:
        """The region as Blender's render border (with its margin)."""
        box = self.box()
        if box is not None and self.size is not None:
            return box_border(box, *self.size)
        return border(self.cols, self.rows, self.col, self.row)


class SampleRange(Request):
    """Some of a frame's Cycles samples (one part of a frame split by samples): `count` of
    the `total` from sample `start` on, with the scene's seed. Parts that cover 0..total-1
    between them average, weighted by their counts, to the render of all `total` samples
    (adaptive sampling and denoising are off in every part; linear light, in float)."""

    start: int = Field(ge=0, lt=MAX_SAMPLES, description="Cycles' sample offset")
    count: int = Field(ge=1, le=MAX_SAMPLES)
    total: int = Field(ge=1, le=MAX_SAMPLES, description="the frame's samples, every part's")

    @model_validator(mode="after")
    def _inside(self) -> SampleRange:
        if self.start + self.count > self.total:
            raise ValueError(f"samples {self.start} to {self.start + self.count - 1} are past "
                             f"the frame's {self.total}")  # fmt: skip
        return self


class JobRequest(Request):
    scene: str | None = Field(
        default=None,
        max_length=300,
        description="a .blend name under the node's scenes folder, or sha256:<hex> of an upload",
        examples=["demo.blend"],
    )
    manifest: Manifest | None = Field(
        default=None,
        description="instead of `scene`: a packed shot, its files pushed first (PUT /files)",
    )
    frames: str = Field(
        max_length=10_000, description="frame spec: '1-24', '1-100x5', '1,3,7'", examples=["1-3"]
    )
    format: str | None = Field(
        None,
        max_length=40,
        description="Blender image format (-F); none: the scene's own output settings",
    )
    allow_missing: bool = Field(
        False,
        description="render frames although files the scene needs are missing (listed as "
        "warnings); by default such frames fail naming the files",
    )
    session: str | None = Field(
        default=None,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="the orchestrator's job this batch belongs to: on a bpy node its next "
        "batches find the scene loaded (a warm slot); none: nothing is kept for later",
    )
    tile: Tile | None = Field(
        default=None,
        description="render only this region of each frame (its image is the region alone); "
        "none: whole frames",
    )
    samples: SampleRange | None = Field(
        default=None,
        description="render only these Cycles samples of each frame, as a part of a sample "
        "split: format OPEN_EXR, written in 32-bit float, unlike the scene's own settings",
    )
    develop: dict[int, Sha256] | None = Field(
        default=None,
        max_length=MAX_DEVELOP_FRAMES,
        description="instead of rendering, frame -> sha256 of a linear float OpenEXR this node "
        "holds (PUT /files/SHA256): each frame of `frames` is that image saved as the scene "
        "saves its renders (output format and settings, view transform, look, exposure, "
        "curves). How a frame split by samples is finished",
    )

    @model_validator(mode="after")
    def _one_scene(self) -> JobRequest:
        if (self.scene is None) == (self.manifest is None):
            raise ValueError("give either `scene` or `manifest`")
        asked = (self.format or "").strip().upper()
        if self.samples is not None and FORMAT_ALIASES.get(asked, asked) != "OPEN_EXR":
            raise ValueError("a part of a sample split is rendered as format OPEN_EXR: ask for it")
        if self.develop is not None and (self.tile is not None or self.samples is not None):
            raise ValueError("`develop` saves images it is given: no `tile` or `samples` with it")
        return self


# Render slots one node may have: more is a node lying, not a machine.
MAX_SLOTS = 1024
# What a node may say of one frame's error, or of a job's: Blender's words, cut to this length.
MAX_MESSAGE_CHARS = 2000


def _cut(value: Any) -> Any:
    return value[:MAX_MESSAGE_CHARS] if isinstance(value, str) else value


Message = Annotated[str, BeforeValidator(_cut)]


class Answer(BaseModel):
    """An answer of the other service, read as untrusted input: no NaN or infinity (Python's
    JSON reader takes them, and one NaN of render seconds would poison the speed book)."""

    model_config = ConfigDict(allow_inf_nan=False)


class JobCreated(Answer):
    id: str
    state: JobState
    status_url: str
    version: str = Field(
        description="the job's status version now: GET /jobs/{id}?since=<it>&wait=S answers "
        "once the job has changed (a frame ended, the job ended or started)"
    )


class FrameStatus(Answer):
    frame: int = Field(ge=0, le=MAX_FRAME_NUMBER)
    state: FrameState
    seconds: float | None = Field(None, ge=0, description="render time of a finished frame")
    error: Message | None = Field(None, description="why a failed frame failed")


class FrameCounts(Answer):
    total: int
    pending: int
    rendering: int
    done: int
    failed: int


class JobSummary(Answer):
    id: str
    state: JobState
    scene: str
    format: str
    counts: FrameCounts
    progress: float = Field(
        ge=0, le=1, description="(frames done + sample hint of the current one) / total"
    )
    error: Message | None = None
    warnings: list[Message] = Field(
        default_factory=list,
        max_length=100,
        description="files the scene needs that were missing (frames rendered without them "
        "because the job allowed it)",
    )
    refused: Message | None = Field(
        default=None,
        description="set when this node will render no batch of the scene (Freestyle without "
        "--allow-freestyle): why, and how to fix it",
    )
    created: float = Field(description="Unix time")
    started: float | None = None
    finished: float | None = None


class JobDetail(JobSummary):
    frames: list[FrameStatus] = Field(max_length=MAX_FRAMES)
    blender_version: str | None = None
    version: str = Field(
        description="changes when the job's state or a frame's end changes; see `since`"
    )
    startup_seconds: float | None = Field(
        default=None,
        ge=0,
        description="seconds from launching Blender to its first frame (scene load, BVH...)",
    )
    warm: bool = Field(
        default=False,
        description="rendered by a worker that had the scene loaded already (no start-up)",
    )
    device: str | None = Field(
        default=None, max_length=300, description="what its slot renders on: CPU, 'CUDA: ...'"
    )


class JobList(Answer):
    jobs: list[JobSummary]


class JobDeleted(Answer):
    id: str
    state: JobState
    removed: bool = Field(description="true when a finished job's files were deleted")


class JobCounts(Answer):
    queued: int
    running: int
    finished: int


# What a node says of its engine and slots, in /info and in its heartbeat alike.
EngineName = Annotated[
    str | None, Field(max_length=20, description="blender (a binary per batch) or bpy (warm)")
]
SlotDevices = Annotated[
    list[Annotated[str, Field(max_length=300)]],
    Field(max_length=MAX_SLOTS, description="each slot's device"),
]
DeviceKind = Annotated[
    Literal["cpu", "gpu"] | None, Field(description="gpu when a slot renders on a GPU")
]
# Pools of nodes: a node has tags (render-node --tags gpu,highmem), a job asks for some
# ("tags": ["gpu"]) and renders only on nodes that have them all.
TAG_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,39}$"
MAX_TAGS = 32
Tags = Annotated[
    list[Annotated[str, Field(pattern=TAG_PATTERN)]],
    Field(max_length=MAX_TAGS, description="lowercase names: letters, digits, _ . -"),
]


def parse_tags(text: str) -> list[str]:
    """'gpu, HighMem' -> ['gpu', 'highmem']: each tag once, in order; ValueError for a name
    that is not one."""
    tags = list(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    bad = [tag for tag in tags if not re.fullmatch(TAG_PATTERN, tag)]
    if bad:
        raise ValueError(f"tags {bad}: use letters, digits, _ . - (at most 40 characters)")
    if len(tags) > MAX_TAGS:
        raise ValueError(f"{len(tags)} tags: at most {MAX_TAGS}")
    return tags


WarmJobs = Annotated[
    list[Annotated[str, Field(max_length=64)]],
    Field(max_length=MAX_SLOTS, description="orchestrator jobs whose scene a slot holds loaded"),
]


class NodeInfo(Answer):
    version: str = Field(max_length=100)
    blender_version: str | None = Field(max_length=100)
    slots: int = Field(ge=1, le=MAX_SLOTS)
    busy: int = Field(ge=0, le=MAX_SLOTS)
    cpu_count: int = Field(ge=0, le=1_000_000)
    threads: int = Field(ge=0, le=1_000_000)
    name: str = Field(max_length=200)
    url: str = Field(max_length=500)
    jobs: JobCounts
    # What holds Blender inside its job's folder: "bwrap", "user NAME" or "none".
    sandbox: str | None = Field(default=None, max_length=100)
    engine: EngineName = None
    devices: SlotDevices = []
    device: DeviceKind = None
    warm: WarmJobs = []


class FileStored(Answer):
    sha256: str
    size: int
    new: bool = Field(description="false when the store held the file already")


class FilesWanted(Request):
    files: list[Annotated[str, Field(max_length=71)]] = Field(
        max_length=20_000, description="sha256s"
    )


class FilesMissing(Answer):
    missing: list[str] = Field(description="the ones of the files asked about not held here")


class SceneStored(Answer):
    scene: str
    size: int


class Health(Answer):
    status: str = "ok"


class NodeRegistration(Request):
    """A node's heartbeat: who it is and where it is reached (its own URL, never a service's)."""

    url: str = Field(min_length=1, max_length=500, examples=["http://10.0.0.5:8100"])
    slots: int = Field(default=1, ge=1, le=MAX_SLOTS)
    sandbox: str | None = Field(
        default=None, max_length=100, description="what holds its Blender: bwrap, user NAME, none"
    )
    busy: int = Field(default=0, ge=0, le=MAX_SLOTS)
    version: str | None = Field(default=None, max_length=100)
    blender_version: str | None = Field(default=None, max_length=100)
    cpu_count: int | None = Field(default=None, ge=0, le=1_000_000)
    name: str | None = Field(default=None, max_length=200)
    instance: str | None = Field(
        default=None, max_length=100, description="the node process, new at every start"
    )
    engine: EngineName = None
    devices: SlotDevices = []
    device: DeviceKind = None
    warm: WarmJobs = []
    tags: Tags = []
    active_hours: str | None = Field(
        default=None,
        max_length=400,
        description="when it renders, in its local time: 19:00-08:00, or a weekly table "
        "(mon-fri 19:00-08:00; sat,sun 00:00-24:00)",
    )
    off_hours: bool = Field(
        default=False, description="outside its active hours now: it takes no new batches"
    )
    work_key: str | None = Field(
        default=None,
        min_length=32,
        max_length=200,
        description="what the orchestrator must send this node as its bearer token: the node "
        "accepts work from the orchestrator it registered with, and from no one else",
    )


class Registered(Answer):
    ok: bool = True
    credential: str | None = Field(
        default=None,
        description="this node's own token, good for its URL only: sent once, to a node that "
        "registered with a join token; it heartbeats with it from then on",
    )
    heartbeat_seconds: float = Field(
        description="how often the node must heartbeat: the orchestrator declares a node lost "
        "after a few of these intervals without one"
    )
