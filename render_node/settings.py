"""The render node's configuration: the only place it lives (env prefix FARM_, CLI on top)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class NodeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8100, ge=0, le=65535)
    data_dir: Path | None = None  # default ./.farm/node-<port>
    scenes_dir: Path = Path("scenes")
    blender: str = "blender"
    slots: int = Field(1, ge=1, le=64)
    threads: int = Field(0, ge=0, le=1024)  # 0: all cores
    token: str | None = None
    orchestrator: str | None = None
    advertise_url: str | None = None
    max_upload_mb: float = Field(2048, gt=0)
    # A hung Blender must never hold a batch forever (the orchestrator has no batch timeout):
    # killed after this long without a line of output. Cycles prints a line per sample.
    frame_timeout: float | None = Field(1800.0, gt=0)
    # Freestyle runs Python from the .blend even with --disable-autoexec: refused unless set.
    allow_freestyle: bool = False
    # Address-space limit (RLIMIT_AS) of each Blender process; None: unlimited.
    memory_limit_mb: int | None = Field(None, gt=0)
    heartbeat_seconds: float = Field(2.0, gt=0)
    log_lines: int = Field(2000, ge=10)
    version_timeout: float = Field(20.0, gt=0)
    log_format: Literal["text", "json"] = "text"

    @property
    def resolved_data_dir(self) -> Path:
        return self.data_dir if self.data_dir is not None else Path(f".farm/node-{self.port}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
