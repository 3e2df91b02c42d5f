"""The orchestrator's one configuration object: every CLI flag and FARM_* variable lands here.

Each field is also an `orchestrator` flag (farm_common.settings_cli): its description is the
flag's help, so say there what the setting does and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from farm_common.auth import check_token_setting
from farm_common.tls import CaCert, TlsCert, TlsKey


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    host: str = Field(default="127.0.0.1", description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on")
    data_dir: Path = Field(
        default=Path("./.farm/orchestrator"), description="SQLite database and collected frames"
    )
    scenes_dir: Path = Field(default=Path("./scenes"), description="folder of named scenes")
    node: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="static render node URL (dev mode), repeatable; in FARM_NODE, comma-separated",
        json_schema_extra={"metavar": "URL"},
    )
    token: str | None = Field(
        default=None,
        description="the bootstrap admin token (named 'admin'): it does everything, including "
        "making tokens of other roles (farm token create); none: the farm is open",
    )
    tls_cert: TlsCert = None
    tls_key: TlsKey = None
    ca_cert: CaCert = None
    join_token: str | None = Field(
        default=None,
        description="the bootstrap join token (named 'join', role node): a node that registers "
        "with it gets a credential of its own, good for its URL only",
    )
    join_token_file: Path | None = Field(
        default=None,
        description="keep the join token in this file, made with a new secret if missing (a "
        "volume the nodes mount read-only: compose.yaml); --join-token wins",
        json_schema_extra={"metavar": "PATH"},
    )
    webhook: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="URL told of jobs ending and nodes lost (a JSON POST each), repeatable; in "
        "FARM_WEBHOOK, comma-separated",
        json_schema_extra={"metavar": "URL"},
    )
    webhook_secret: str | None = Field(
        default=None,
        description="sign each webhook's body: X-Farm-Signature: sha256=HMAC-SHA256(secret, "
        "body) in hex",
    )
    node_timeout_seconds: float = Field(
        default=6.0,
        gt=0,
        description="a node is lost after this long without a heartbeat or an answer; nodes "
        "heartbeat every 2 s and the monitor runs every second, so loss is detected well "
        "within 10 s",
    )
    probe_interval_seconds: float = Field(
        default=1.0,
        gt=0,
        description="how often static nodes are probed (GET /info) and lost nodes looked for",
    )
    max_attempts: int = Field(
        default=3,
        ge=1,
        description="a frame failed on this many different nodes is failed for good; a node "
        "that fails this many batches of a job gets no more batches of it",
    )
    poll_interval: float = Field(
        default=0.3, gt=0, description="seconds between status polls of a running batch"
    )
    max_polls_per_second: float = Field(
        default=100.0,
        gt=0,
        description="status polls of running batches, farm-wide: with more batches running "
        "than this times --poll-interval (30 at the defaults) each is polled less often; a "
        "batch's last frame is waited for on the node, so this delays only collection",
    )
    request_timeout_seconds: float = Field(
        default=2.0,
        gt=0,
        description="timeout of status calls to nodes: short, as they are tiny and a frozen "
        "node must be noticed quickly",
    )
    transfer_timeout_seconds: float = Field(
        default=120.0,
        gt=0,
        description="timeout of scene pushes and frame downloads (real bytes): the longest wait "
        "for any byte, and the least a whole transfer is given (see "
        "--min-transfer-kb-per-second)",
    )
    max_upload_mb: int = Field(default=4096, gt=0, description="largest scene upload, in MB")
    max_frame_mb: float = Field(
        default=2048,
        gt=0,
        description="largest frame file taken from a node, in MB: nodes are not trusted, and "
        "a frame past it fails on that node (an 8K 32-bit multilayer EXR is well under it)",
    )
    min_transfer_kb_per_second: float = Field(
        default=64,
        gt=0,
        description="a scene push or frame download slower than this on average, once "
        "--transfer-timeout-seconds have passed, is given up; every other answer of a node must "
        "come whole within its timeout plus its largest allowed size at this rate (a node "
        "dripping bytes cannot hold a batch: aiohttp's timeouts are per read). 64 KB/s is far "
        "under any working link, so only a stuck or hostile node meets it",
    )
    batch_stall_seconds: float = Field(
        default=86400,
        gt=0,
        description="a batch in which no frame has ended for this long is taken back from its "
        "node (its node job deleted, its frames back in the queue, the node counts a failure): "
        "the node's own --frame-timeout catches a silent Blender, this a node that only says "
        "it renders. A day by default, so no real frame (hours each, at worst) is ever cut: "
        "raise it for frames that take longer still",
    )
    max_nodes: int = Field(
        default=1000,
        ge=1,
        description="nodes known at once; a registration past it answers 503 (lost nodes are "
        "forgotten first)",
    )
    forget_lost_node_seconds: float = Field(
        default=3600,
        gt=0,
        description="a registered node lost for this long is forgotten (it registers again "
        "when it comes back)",
    )
    max_batch_size: int = Field(
        default=25,
        ge=1,
        description="without a batch size in the request: most frames in a node's first batch "
        "of a job, before its speed on the scene is known",
    )
    max_batch_seconds: float = Field(
        default=600.0,
        gt=0,
        description="a batch cut to a node's speed (all but its first of a job) holds at "
        "most this much expected render time",
    )
    max_sized_batch: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="... and at most this many frames",
    )
    max_queued_jobs: int = Field(
        default=1000,
        ge=1,
        description="jobs queued or running at once; POST /render answers 429 beyond",
    )
    rate_limit: float = Field(
        default=600.0,
        ge=0,
        description="POST /render per client address and minute (a token bucket, bursts of as "
        "many); 0: off. Generous: it stops a runaway script, not a busy studio",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="least severe log lines shown"
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="text for people, json for log collectors"
    )
    single_process: bool = Field(
        default=False,
        description="run the scheduler on a thread of this process, not in a child process of "
        "its own: one PID to watch, but status answers wait on a busy scheduler",
    )

    @field_validator("token", "join_token")
    @classmethod
    def _own_token(cls, value: str | None) -> str | None:
        return check_token_setting(value)

    @field_validator("node", "webhook", mode="before")
    @classmethod
    def _split_nodes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("node", mode="after")
    @classmethod
    def _strip_slash(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]

    @field_validator("webhook_secret")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None  # FARM_WEBHOOK_SECRET= (compose's default): unsigned

    @field_validator("webhook", mode="after")
    @classmethod
    def _http_urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"webhook {url[:100]!r}: give an http(s):// URL")
        return value

    @property
    def renders_dir(self) -> Path:
        return self.data_dir / "renders"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "scenes"

    @property
    def files_dir(self) -> Path:
        """The files of packed shots, by sha256 (farm_common.blobs)."""
        return self.data_dir / "files"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "farm.sqlite3"
