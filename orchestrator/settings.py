"""The orchestrator's one configuration object: every CLI flag and FARM_* variable lands here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class OrchestratorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("./.farm/orchestrator")
    scenes_dir: Path = Path("./scenes")
    # Static node URLs (dev mode); FARM_NODE takes a comma-separated list.
    node: Annotated[list[str], NoDecode] = Field(default_factory=list)
    token: str | None = None
    # A node is lost after this long without a heartbeat or an answer. Nodes heartbeat every
    # 2 s and the monitor runs every second, so loss is detected well within 10 s.
    node_timeout_seconds: float = 6.0
    # How often static nodes are probed (GET /info) and lost nodes are looked for.
    probe_interval_seconds: float = 1.0
    # A frame failed on this many different nodes is failed for good; a node that fails this
    # many batches of a job gets no more batches of it.
    max_attempts: int = 3
    poll_interval: float = 0.3
    # Status polls of running batches, farm-wide, per second: with more batches running than
    # this many times `poll_interval` (30 at the defaults), each is polled less often. A batch's
    # last frame is waited for on the node (held request), so this delays only collection.
    max_polls_per_second: float = Field(default=100.0, gt=0)
    # Short: status calls are tiny, and a frozen node must be noticed quickly.
    request_timeout_seconds: float = 2.0
    # Scene pushes and frame downloads move real bytes.
    transfer_timeout_seconds: float = 120.0
    max_upload_mb: int = Field(default=4096, gt=0)
    # Without a batch size in the request: the first batch of each node (before its speed on
    # the scene is known) is at most this many frames; later ones are cut to the node's
    # speed: at most `max_batch_seconds` of expected render time and `max_sized_batch` frames.
    max_batch_size: int = 25
    max_batch_seconds: float = Field(default=600.0, gt=0)
    max_sized_batch: int = Field(default=100, ge=1, le=10_000)
    # Jobs queued or running at once; POST /render answers 429 beyond it.
    max_queued_jobs: int = Field(default=1000, ge=1)
    # POST /render per client address and minute (a token bucket, bursts of as many); 0: off.
    # Generous: it stops a runaway script, not a busy studio or the test suites.
    rate_limit: float = Field(default=600.0, ge=0)
    log_format: Literal["text", "json"] = "text"
    # The `orchestrator` command runs the scheduler in a child process, so that status reads
    # never wait for its interpreter lock; this keeps both in one process (one PID to watch).
    single_process: bool = False

    @field_validator("node", mode="before")
    @classmethod
    def _split_nodes(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("node", mode="after")
    @classmethod
    def _strip_slash(cls, value: list[str]) -> list[str]:
        return [url.rstrip("/") for url in value]

    @property
    def renders_dir(self) -> Path:
        return self.data_dir / "renders"

    @property
    def uploads_dir(self) -> Path:
        return self.data_dir / "scenes"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "farm.sqlite3"
