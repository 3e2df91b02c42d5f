"""A small typed HTTP client for the orchestrator, used by the `farm` CLI and the demo."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pydantic_settings import BaseSettings, SettingsConfigDict

from farm_common.auth import auth_headers
from farm_common.protocol import EXTENSIONS, frame_name
from farm_common.tls import client_context

DEFAULT_URL = "http://127.0.0.1:8000"
# Where `farm up` keeps the token it generated, so local commands find it without typing.
LOCAL_TOKEN_FILE = Path(".farm") / "token"


class ClientSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_")

    orchestrator: str = DEFAULT_URL
    token: str | None = None
    ca_cert: Path | None = None


class FarmClientError(Exception):
    """An answer from the orchestrator the user should read (it says what to fix)."""


def resolve_token(token: str | None) -> str | None:
    if token:
        return token
    if LOCAL_TOKEN_FILE.is_file():
        return LOCAL_TOKEN_FILE.read_text().strip() or None
    return None


class FarmClient:
    def __init__(
        self,
        url: str,
        token: str | None = None,
        timeout: float = 30.0,
        ca_cert: Path | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            headers=auth_headers(token),
            timeout=httpx.Timeout(timeout, connect=5.0),
            verify=client_context(ca_cert),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FarmClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_success:
            return response
        try:
            body = response.json()
            detail = body.get("detail") if isinstance(body, dict) else None
        except ValueError:
            detail = None
        raise FarmClientError(
            f"{response.request.method} {response.request.url.path} -> "
            f"{response.status_code}: {detail or response.text[:300]}"
        )

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            hint = (
                " (signed by a private CA? give it with --ca-cert / FARM_CA_CERT)"
                if "CERTIFICATE_VERIFY_FAILED" in str(exc)
                else ""
            )
            raise FarmClientError(
                f"cannot reach the orchestrator at {self.url}: {exc}{hint}"
            ) from exc
        return self._check(response).json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/health")
        return result

    def upload_scene(self, path: Path) -> str:
        """Upload a .blend unless the orchestrator already has it; returns "sha256:<hex>"."""
        with path.open("rb") as fh:
            files = {"file": (path.name, fh, "application/x-blender")}
            result = self._json("POST", "/scenes", files=files, timeout=600.0)
        return str(result["scene"])

    def missing_files(self, shas: list[str]) -> list[str]:
        """Which of these files the farm lacks, in one request (farm_pack.ship slices)."""
        return list(self._json("POST", "/files/missing", json={"files": shas})["missing"])

    def put_file(self, sha: str, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        """Stream one file to the farm's file store under its sha256."""

        def chunks() -> Iterator[bytes]:
            with path.open("rb") as fh:
                while data := fh.read(1 << 20):
                    yield data
                    if on_bytes is not None:
                        on_bytes(len(data))

        headers = {"Content-Length": str(path.stat().st_size)}
        self._json("PUT", f"/files/{sha}", content=chunks(), headers=headers, timeout=3600.0)

    def submit(
        self,
        scene: str | None,
        frames: str,
        *,
        batch_size: int | None = None,
        fmt: str | None = None,
        priority: int | None = None,
        video: bool = False,
        blender_version: str | None = None,
        device: str | None = None,
        manifest: dict[str, Any] | None = None,
        allow_missing: bool = False,
        asset_warnings: list[str] | None = None,
        tiles: int = 1,
        tile_margin: int | None = None,
        split_samples: int = 1,
        tags: list[str] | None = None,
        after: list[str] | None = None,
    ) -> str:
        body: dict[str, Any] = {"frames": frames}
        if manifest is not None:
            body["manifest"] = manifest
        else:
            body["scene"] = scene
        if allow_missing:
            body["allow_missing"] = True
        if asset_warnings:
            body["asset_warnings"] = asset_warnings[:200]
        if batch_size:
            body["batch_size"] = batch_size
        if fmt:
            body["format"] = fmt
        if priority is not None:
            body["priority"] = priority
        if video:
            body["video"] = True
        if blender_version:
            body["blender_version"] = blender_version
        if device:
            body["device"] = device
        if tiles != 1:
            body["tiles"] = tiles
        if tile_margin is not None:
            body["tile_margin"] = tile_margin
        if split_samples != 1:
            body["split_samples"] = split_samples
        if tags:
            body["tags"] = tags
        if after:
            body["after"] = after
        return str(self._json("POST", "/render", json=body)["id"])

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/render/{job_id}")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        result = self._json("GET", "/render")
        return list(result)

    def frame_states(self, job_id: str, state: str | None = None) -> list[dict[str, Any]]:
        params = {"state": state} if state else None
        result = self._json("GET", f"/render/{job_id}/frames", params=params)
        return list(result["frames"])

    def requeue(self, job_id: str, frames: str | None = None) -> dict[str, Any]:
        """Render `frames` of the job again (None: every frame not done; resumes a cancelled
        job)."""
        body: dict[str, Any] = {"frames": frames} if frames else {"failed": True}
        result: dict[str, Any] = self._json("POST", f"/render/{job_id}/requeue", json=body)
        return result

    def delete(self, job_id: str) -> dict[str, Any]:
        """Remove an ended job and its frames from the farm."""
        result: dict[str, Any] = self._json("POST", f"/render/{job_id}/delete")
        return result

    def cancel(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/render/{job_id}")
        return result

    def node_action(self, url: str, action: str) -> dict[str, Any]:
        """Drain, pause or resume the node at `url`; the node as the farm lists it after."""
        result: dict[str, Any] = self._json("POST", f"/nodes/{action}", json={"url": url})
        return result

    def create_token(self, name: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", "/tokens", json={"name": name, "role": role})
        return result

    def tokens(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/tokens"))

    def revoke_token(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("DELETE", f"/tokens/{name}")
        return result

    def audit(self, who: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit, **({"who": who} if who else {})}
        return list(self._json("GET", "/audit", params=params))

    def nodes(self) -> list[dict[str, Any]]:
        result = self._json("GET", "/nodes")
        return list(result)

    def video(
        self, job_id: str, frames: str | None = None, fps: int = 24, after: list[str] | None = None
    ) -> str:
        """A video job over the job's frames (all, or `frames`); returns its id."""
        body: dict[str, Any] = {"fps": fps}
        if frames:
            body["frames"] = frames
        if after:
            body["after"] = after
        return str(self._json("POST", f"/render/{job_id}/video", json=body)["id"])

    def download_frame(self, job_id: str, frame: int, out_dir: Path) -> Path:
        """Stream one frame into out_dir (atomic rename); returns its path."""
        return self._download(
            f"/render/{job_id}/frames/{frame}", lambda r: out_dir / _frame_file_name(r, frame)
        )

    def download_video(self, job_id: str, target: Path) -> Path:
        """Stream a job's video to `target` (atomic rename)."""
        return self._download(f"/render/{job_id}/video.mp4", lambda _: target)

    def _download(self, path: str, target_of: Callable[[httpx.Response], Path]) -> Path:
        try:
            with self._http.stream("GET", path) as response:
                if not response.is_success:
                    response.read()
                    self._check(response)
                target = target_of(response)
                with _atomic_file(target) as fh:
                    for chunk in response.iter_bytes(1 << 16):
                        fh.write(chunk)
        except httpx.TransportError as exc:
            raise FarmClientError(f"download of {path} failed: {exc}") from exc
        return target


def _frame_file_name(response: httpx.Response, frame: int) -> str:
    disposition = response.headers.get("content-disposition", "")
    if "filename=" in disposition:
        name = disposition.split("filename=", 1)[1].strip().strip('"')
        # Only the base name: a hostile server must not write outside out_dir.
        name = os.path.basename(name)
        if name and not name.startswith("."):
            return name
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    return frame_name(frame, EXTENSIONS.get(content_type, ".png"))


@contextmanager
def _atomic_file(target: Path) -> Iterator[Any]:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
