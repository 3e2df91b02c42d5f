"""The orchestrator's HTTP shapes: request bodies (unknown fields refused) and answers.

What nodes send and receive is in farm_common.protocol; these are what clients see.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, model_validator

from farm_common.manifest import Manifest
from farm_common.protocol import BatchState, FrameState, JobState, Request, Tags
from farm_common.tiles import DEFAULT_MARGIN, MAX_MARGIN, MAX_PARTS, MAX_TILES
from orchestrator.access import NAME_PATTERN, Role

AfterJobs = Annotated[list[Annotated[str, Field(pattern=r"^[0-9a-f]{12}$")]], Field(max_length=100)]


class RenderRequest(Request):
    scene: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        description="sha256:<hex> of an upload (POST /scenes), or a .blend under --scenes-dir",
        examples=["demo.blend"],
    )
    manifest: Manifest | None = Field(
        default=None,
        description="instead of `scene`: a packed shot (`farm render` makes it), every file "
        "uploaded first with PUT /files/SHA256",
    )
    frames: str = Field(min_length=1, max_length=10_000, examples=["1-24"])
    batch_size: int | None = Field(default=None, ge=1, le=10_000)
    format: str | None = Field(
        default=None,
        max_length=40,
        description="Blender image format: PNG, JPEG (JPG), OPEN_EXR (EXR), TIFF, HDR, ...; "
        "none: the scene's own output settings (format, depth, codec, layers)",
    )
    allow_missing: bool = Field(
        default=False,
        description="render frames although files the scene needs are missing; by default "
        "such frames fail naming the files",
    )
    asset_warnings: list[Annotated[str, Field(max_length=1000)]] = Field(
        default_factory=list,
        max_length=200,
        description="what the submitter found when packing (missing files it was told to "
        "accept, files from outside the project): shown with the job",
    )
    priority: int = Field(default=0, ge=-1000, le=1000)
    video: bool = False
    blender_version: str | None = Field(
        default=None,
        pattern=r"^[0-9]+(\.[0-9]+){0,2}$",
        description="render only on nodes running this Blender: '4.2' takes 4.2.x nodes, "
        "'4.2.1' only those (default: any node; GET /render/ID shows the versions used)",
        examples=["4.2"],
    )
    device: Literal["cpu", "gpu"] | None = Field(
        default=None,
        description="render only on nodes whose slots render on a GPU (gpu) or on the CPU "
        "(cpu); default: any node. A job no live node matches waits for one",
    )
    tiles: int = Field(
        default=1,
        ge=1,
        le=MAX_TILES,
        description="split every frame in this many regions (a grid: 9 is 3x3, 16 is 4x4), "
        "rendered apart like batches and stitched into the frame; for stills on many nodes. "
        "Formats PNG, JPEG, TIFF, OPEN_EXR, OPEN_EXR_MULTILAYER",
    )
    tile_margin: int | None = Field(
        default=None,
        ge=0,
        le=MAX_MARGIN,
        description="pixels rendered around each region and cut off when stitching, so a "
        "denoiser (or a compositor filter) sees past the region's edges; default: "
        f"{DEFAULT_MARGIN} where the scene denoises with Cycles, else 0",
    )
    after: AfterJobs = Field(
        default_factory=list,
        description="jobs (ids) that must complete first: this one waits for them, and fails "
        "if one of them fails or is cancelled",
    )
    tags: Tags = Field(
        default_factory=list,
        description="render only on nodes that have all these tags (render-node --tags); a "
        "job no live node matches waits, saying so in GET /render/ID (`waiting`)",
    )
    split_samples: int = Field(
        default=1,
        ge=1,
        le=MAX_PARTS,
        description="split every frame's Cycles samples in this many parts, each rendered "
        "whole frame (a node each), merged in linear float and saved as the scene saves its "
        "renders: no seams. Cycles only, no denoising, not with tiles; any still format but "
        "OPEN_EXR_MULTILAYER",
    )

    @model_validator(mode="after")
    def _one_scene(self) -> RenderRequest:
        if (self.scene is None) == (self.manifest is None):
            raise ValueError("give either `scene` (a .blend) or `manifest` (a packed shot)")
        return self


class RenderCreated(BaseModel):
    id: str
    status_url: str
    state: JobState
    frames: int = Field(description="how many frames the job renders")
    batch_size: int
    tiles: int = Field(default=1, description="regions each frame is split in")
    split_samples: int = Field(default=1, description="parts each frame's samples are split in")


class VideoRequest(Request):
    frames: str | None = Field(
        default=None,
        max_length=10_000,
        description="which of the job's frames, in order (default: all of them)",
        examples=["1-120"],
    )
    fps: int = Field(default=24, ge=1, le=240, description="frames a second")
    priority: int | None = Field(
        default=None, ge=-1000, le=1000, description="default: the render job's"
    )
    after: AfterJobs = Field(
        default_factory=list,
        description="other jobs that must complete first (the render job itself always is)",
    )


class RequeueRequest(Request):
    frames: str | None = Field(
        default=None,
        max_length=10_000,
        description="render these frames again, done ones too: '10-20', '4,9'",
        examples=["10-20"],
    )
    failed: bool = Field(
        default=False,
        description="render again every frame not done: the failed ones (and a cancelled "
        "job's unrendered ones: it resumes)",
    )

    @model_validator(mode="after")
    def _one_choice(self) -> RequeueRequest:
        if (self.frames is None) == (not self.failed):
            raise ValueError('give either `frames` (a spec) or `"failed": true`')
        return self


class RenderRequeued(BaseModel):
    id: str
    state: JobState
    status_url: str
    requeued: str = Field(description="the frames sent back to the queue, as a spec")
    frames: int = Field(description="how many frames")


class RenderDeleted(BaseModel):
    id: str
    deleted: bool
    files: int = Field(description="files removed from the orchestrator's disk")
    bytes: int


class RequeueEntry(BaseModel):
    at: float
    asked: str = Field(description="the frames asked for, or 'failed'")
    frames: str = Field(description="the frames it sent back to the queue")
    count: int


class SceneUploaded(BaseModel):
    scene: str = Field(description="sha256:<hex>: what POST /render takes as `scene`")
    name: str | None = None


class FrameTotals(BaseModel):
    total: int
    done: int
    failed: int
    rendering: int


class TileTotals(BaseModel):
    per_frame: int = Field(description="regions a frame is split in")
    grid: list[int] = Field(description="[columns, rows]")
    margin: int = Field(description="pixels rendered around each region, cut off when stitched")
    total: int
    done: int
    failed: int
    rendering: int


class SampleTotals(BaseModel):
    per_frame: int = Field(description="parts a frame's samples are split in")
    samples: int = Field(description="the frame's Cycles samples, all its parts'")
    total: int
    done: int
    failed: int
    rendering: int


class RenderSummary(BaseModel):
    id: str
    state: JobState
    kind: Literal["render", "video"] = Field(
        default="render", description="video: an mp4 of `source`'s frames, made on the farm"
    )
    source: str | None = Field(default=None, description="a video job's render job")
    submitted_by: str | None = Field(default=None, description="the name of the token used")
    fps: int | None = Field(default=None, description="a video job's frames a second")
    scene: str
    scene_name: str
    frames_spec: str
    priority: int
    format: str
    batch_size: int
    blender_version: str | None
    device: str | None = Field(default=None, description="cpu or gpu: the nodes it renders on")
    tags: list[str] = Field(default_factory=list, description="the tags its nodes must have")
    after: list[str] = Field(default_factory=list, description="jobs it waits for")
    waiting: str | None = Field(
        default=None, description="why no node takes the job's frames now, when none can"
    )
    saved_by: str | None = Field(
        default=None,
        description="the Blender version that saved the scene (5.0): older nodes do not get it",
    )
    frames: FrameTotals = Field(
        description="frames; of a tiled job, a frame is done once its regions are stitched"
    )
    tiles: TileTotals | None = Field(default=None, description="a tiled job's regions")
    samples: SampleTotals | None = Field(
        default=None, description="a job split by samples: its parts"
    )
    progress: float
    created: float
    started: float | None
    finished: float | None
    elapsed_seconds: float | None
    status_url: str
    eta_seconds: float | None = None


class FailedFrame(BaseModel):
    frame: int
    tile: int | None = Field(default=None, description="a tiled job's region that failed")
    part: int | None = Field(default=None, description="a sample split's part that failed")
    error: str | None
    nodes: list[str]


class BatchView(BaseModel):
    id: str
    frames: str = Field(description="the batch's frames as a spec: '1-8'")
    node: str | None
    state: BatchState
    attempts: int
    done: int
    started: float | None
    finished: float | None
    tile: int | None = Field(default=None, description="a tiled job's region the batch renders")
    part: int | None = Field(default=None, description="a sample split's part it renders")


class AssetSummary(BaseModel):
    files: int
    bytes: int
    warnings: list[str] = Field(default_factory=list)


class RenderDetail(RenderSummary):
    nodes: dict[str, int] = Field(description="frames collected per node URL")
    failed_frames: list[FailedFrame] = Field(description="the first 100 failed frames")
    blender_versions: list[str]
    mixed_blender_versions: bool
    error: str | None = None
    video_requested: bool
    video: bool
    video_url: str | None = None
    assets: AssetSummary | None = Field(
        default=None, description="a packed shot's files, bytes, and warnings about them"
    )
    requeues: list[RequeueEntry] = Field(
        default_factory=list, description="each time frames of the job were sent back"
    )
    batches: list[BatchView]


class FrameEntry(BaseModel):
    frame: int
    state: FrameState
    attempts: int | None = None
    seconds: float | None = None
    node: str | None = None
    error: str | None = None
    tiles: int | None = Field(default=None, description="a tiled job's regions of the frame")
    tiles_done: int | None = None
    parts: int | None = Field(default=None, description="a sample split's parts of the frame")
    parts_done: int | None = None
    nodes: list[str] | None = Field(default=None, description="where its pieces rendered")


class TileEntry(BaseModel):
    tile: int = Field(description="the region's number: left to right, from the top row down")
    col: int
    row: int
    state: FrameState
    node: str | None = None
    seconds: float | None = None


class FrameTiles(BaseModel):
    frame: int
    state: FrameState = Field(description="done once its regions are stitched")
    cols: int
    rows: int
    width: int | None = Field(default=None, description="the frame's size, when the scene says")
    height: int | None = None
    tiles: list[TileEntry]


class FrameList(BaseModel):
    id: str
    frames: list[FrameEntry]


class FrameMap(BaseModel):
    first: int = Field(description="the first frame; the others follow it (by `step`)")
    states: str = Field(
        description="one character a frame: p pending, r rendering, d done, f failed"
    )
    step: int | None = Field(default=None, description="when frames run first, first+step, ...")
    frames: list[int] | None = Field(default=None, description="when they follow no step")


class NodeAction(Request):
    url: str = Field(max_length=2000, description="the node's URL, as GET /nodes lists it")


class NodeView(BaseModel):
    url: str
    name: str | None
    state: str = Field(description="healthy | busy | lost | draining | paused")
    tags: list[str] = Field(default_factory=list, description="its pools (render-node --tags)")
    active_hours: str | None = Field(
        default=None, description="when it renders, in its local time (render-node --active-hours)"
    )
    off_hours: bool = Field(
        default=False, description="outside its active hours now: draining until they start"
    )
    slots: int
    busy: int
    current_batch: str | None
    current_batches: list[str]
    frames_rendered: int
    last_seen: float | None
    last_seen_seconds_ago: float | None
    blender_version: str | None
    version: str | None
    cpu_count: int | None
    static: bool
    sandbox: str | None = Field(
        default=None,
        description="what holds the node's Blender inside its job's folder: bwrap, user NAME, "
        "none (only the scene guard); unknown until the node says",
    )
    engine: str | None = Field(
        default=None, description="blender (a binary started per batch) or bpy (warm slots)"
    )
    devices: list[str] = Field(
        default_factory=list, description="what each slot renders on: CPU, 'CUDA: ...'"
    )
    device: str | None = Field(default=None, description="cpu or gpu")


class TokenRequest(Request):
    name: str = Field(
        pattern=NAME_PATTERN,
        description="who holds it: a user or a machine (letters, digits, _ . @ -)",
        examples=["ana"],
    )
    role: Role = Field(
        description="admin: everything; submit: submit and act on its own jobs, read all; view: "
        "read only; node: a join token for render nodes",
    )


class TokenCreated(BaseModel):
    name: str
    role: str
    token: str = Field(description="the token: shown this once, the farm keeps only its hash")


class TokenView(BaseModel):
    name: str
    role: str
    url: str | None = Field(default=None, description="a node's own credential: its node")
    created: float
    created_by: str | None
    revoked: float | None


class AuditEntry(BaseModel):
    at: float
    who: str = Field(description="the token's name")
    role: str
    action: str = Field(description="the endpoint: 'POST /render/{job_id}/requeue'")
    target: str | None = Field(description="the job, node or token acted on, or made")
    status: int = Field(description="the answer's HTTP status: refusals are kept too")
    detail: str | None


class WhoAmI(BaseModel):
    name: str
    role: Role
