"""The render node's configuration: the only place it lives (env prefix FARM_, CLI on top).

Each field is also a `render-node` flag (farm_common.settings_cli): its description is the
flag's help, so say there what the setting does and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from farm_common.auth import check_token_setting
from farm_common.protocol import parse_tags
from farm_common.schedule import parse_schedule
from farm_common.tls import CaCert, TlsCert, TlsKey
from render_node.devices import DeviceChoice


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address to bind")
    port: int = Field(default=8100, ge=0, le=65535, description="port to listen on")
    data_dir: Path | None = Field(
        default=None, description="jobs and uploaded scenes; none: ./.farm/node-PORT"
    )
    scenes_dir: Path = Field(default=Path("scenes"), description="folder of named scenes")
    blender: str = Field(
        default="auto",
        description="the Blender to render with: a blender executable (started per batch); "
        "`bpy`: Blender as a Python module installed with the node (pip install "
        "'blender-farm[bpy]'), one warm worker per slot that keeps the scene loaded between "
        "a job's batches; `bpy:PYTHON`: the bpy of another Python; auto: bpy when installed, "
        "else blender on PATH",
        json_schema_extra={"metavar": "auto|bpy|bpy:PYTHON|PATH"},
    )
    slots: int = Field(
        default=1, ge=1, le=64, description="Blender processes at once (--gpus: one per GPU)"
    )
    device: DeviceChoice = Field(
        default="auto",
        description="what Cycles renders on: auto (the first GPU type found, OptiX before "
        "CUDA, HIP, oneAPI, Metal; else the CPU), cpu, or one GPU type; a type with no device "
        "here stops the node at start",
    )
    gpus: str | None = Field(
        default=None,
        description="GPU numbers (from 0, among the --device type's) to render on, a slot "
        "bound to each: 0,1; none: every slot uses every GPU of the type",
        json_schema_extra={"metavar": "N,N"},
    )
    tags: str | None = Field(
        default=None,
        description="this node's tags, comma-separated (gpu,highmem): a job that asks for tags "
        "renders only on nodes that have them all",
        json_schema_extra={"metavar": "TAG,TAG"},
    )
    active_hours: str | None = Field(
        default=None,
        description="render only within these hours of this machine's local time, as in "
        "19:00-08:00 (a workstation that joins the farm at night), or a weekly table: "
        "'mon-fri 19:00-08:00; sat,sun 00:00-24:00' (a window past midnight belongs to the "
        "day it starts on); outside them the node finishes its batches and takes no new ones",
        json_schema_extra={"metavar": "HH:MM-HH:MM"},
    )
    warm_seconds: float = Field(
        default=120.0,
        gt=0,
        description="bpy engine: a slot's worker that has waited this long with no batch of "
        "its job stops, giving its memory back",
    )
    threads: int = Field(
        default=0, ge=0, le=1024, description="render threads per Blender; 0: all cores"
    )
    token: str | None = Field(
        default=None,
        description="the farm's token (FARM_TOKEN): this node accepts it, and registers with it "
        "unless it has a join token; an admin token, so better a join token on a node",
    )
    tls_cert: TlsCert = None
    tls_key: TlsKey = None
    ca_cert: CaCert = None
    join_token: str | None = Field(
        default=None,
        description="register with this join token (role node): the orchestrator answers with "
        "this node's own credential, kept in the data folder; the node then accepts work only "
        "from that orchestrator",
    )
    join_token_file: Path | None = Field(
        default=None,
        description="read the join token from this file, waiting until it is there (the "
        "orchestrator's --join-token-file, mounted read-only); --join-token wins",
        json_schema_extra={"metavar": "PATH"},
    )
    orchestrator: str | None = Field(
        default=None,
        description="orchestrator URL to register with",
        json_schema_extra={"metavar": "URL"},
    )
    advertise_url: str | None = Field(
        default=None,
        description="this node's URL as the orchestrator sees it; none: this machine's address "
        "towards the orchestrator",
        json_schema_extra={"metavar": "URL"},
    )
    max_upload_mb: float = Field(
        default=2048, gt=0, description="largest scene or file upload, in MB"
    )
    file_store_mb: float = Field(
        default=20480,
        gt=0,
        description="room for the files of packed shots, in MB: past it the least recently "
        "used files go, never one a queued or running job needs",
    )
    frame_timeout: float | None = Field(
        default=1800.0,
        gt=0,
        description="kill Blender after this many seconds without a line of output (Cycles "
        "prints one per sample): a hung Blender must never hold a batch forever (the "
        "orchestrator's --batch-stall-seconds is far longer: it catches a node, not a Blender)",
        json_schema_extra={"metavar": "SECONDS"},
    )
    allow_freestyle: bool = Field(
        default=False,
        description="render scenes that enable Freestyle, which runs Python from the .blend "
        "even with --disable-autoexec; refused unless set",
    )
    memory_limit_mb: int | None = Field(
        default=None,
        gt=0,
        description="address-space limit (RLIMIT_AS) of each Blender process, in MB; Blender "
        "needs ~1 GB of it to start; none: unlimited",
    )
    sandbox: Literal["auto", "bwrap", "user", "none"] = Field(
        default="auto",
        description="what holds Blender inside its job's folder: bwrap (bubblewrap: the file "
        "system read-only, the node's data hidden, no network), user (Blender runs as "
        "--sandbox-user; for containers, the node runs as root), none; auto: bwrap if it "
        "works here, else user if possible, else none with a warning",
    )
    sandbox_user: str = Field(
        default="farm-blender",
        description="the unprivileged user Blender runs as under --sandbox user",
        json_schema_extra={"metavar": "NAME"},
    )
    sandbox_hide: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="a folder Blender must not see under bwrap (the node's data folder always "
        "is), repeatable; in FARM_SANDBOX_HIDE, comma-separated",
        json_schema_extra={"metavar": "DIR"},
    )
    blender_env: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="a variable of the node's environment Blender may see besides the basics "
        "(PATH, HOME, locale, GPU drivers' settings), repeatable, * as wildcard; FARM_* never; "
        "in FARM_BLENDER_ENV, comma-separated",
        json_schema_extra={"metavar": "NAME"},
    )
    path_map: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="FROM=TO: a scene's absolute paths under FROM are read under TO on this "
        "node (shared storage mounted elsewhere), repeatable; in FARM_PATH_MAP, comma-separated",
        json_schema_extra={"metavar": "FROM=TO"},
    )
    heartbeat_seconds: float = Field(
        default=2.0,
        gt=0,
        description="seconds between registrations with the orchestrator, until its answer "
        "says how often (a third of its loss timeout)",
    )
    log_lines: int = Field(
        default=2000, ge=10, description="lines of Blender output kept per job (GET /jobs/ID/log)"
    )
    version_timeout: float = Field(
        default=20.0, gt=0, description="seconds to wait for `blender --version` to answer"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="least severe log lines shown"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for log collectors"
    )

    @field_validator("token", "join_token")
    @classmethod
    def _own_token(cls, value: str | None) -> str | None:
        return check_token_setting(value)

    @field_validator("path_map")
    @classmethod
    def _check_path_map(cls, value: list[str]) -> list[str]:
        for item in value:
            source, sep, target = item.partition("=")
            if not sep or not source.startswith("/") or not target.startswith("/"):
                raise ValueError(f"path map {item!r}: give FROM=TO, two absolute folders")
        return value

    @field_validator("gpus")
    @classmethod
    def _check_gpus(cls, value: str | None) -> str | None:
        if value is not None:
            parts = [part.strip() for part in value.split(",")]
            if not all(part.isdigit() for part in parts) or len(set(parts)) != len(parts):
                raise ValueError(f"give GPU numbers once each, as in 0,1 (not {value!r})")
        return value

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, value: str | None) -> str | None:
        return None if value is None else ",".join(parse_tags(value))

    @field_validator("active_hours")
    @classmethod
    def _check_hours(cls, value: str | None) -> str | None:
        if value is None or not value.strip():  # FARM_ACTIVE_HOURS= (compose's default): always
            return None
        parse_schedule(value)
        return value

    @property
    def tag_list(self) -> list[str]:
        return parse_tags(self.tags) if self.tags else []

    @property
    def gpu_numbers(self) -> list[int]:
        return [int(part) for part in self.gpus.split(",")] if self.gpus else []

    @field_validator("sandbox_hide", "blender_env", "path_map", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else Path(f".farm/node-{self.port}")

    @property
    def path_pairs(self) -> list[tuple[str, str]]:
        return [tuple(item.split("=", 1)) for item in self.path_map]  # type: ignore[misc]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
