"""The farm's HTTP API as the add-on calls it, with the standard library only (Blender's Python
has no httpx). Every call has a timeout, and every failure becomes a FarmError whose text is
what the artist reads in the status bar: what went wrong and what to do about it."""

from __future__ import annotations

import json
import os
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFERENCES = "Edit > Preferences > Add-ons > Render Farm"


class FarmError(Exception):
    """A failure the artist should read: it says what to fix."""


class FarmUnreachable(FarmError):
    pass


class FarmRefused(FarmError):
    """The farm answered with a 4xx or 5xx."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def refusal_message(method: str, path: str, status: int, detail: str) -> str:
    if status == 401:
        return f"the farm wants a valid token ({detail}): set it in {PREFERENCES}"
    if status == 403:
        return f"the farm refused this token: {detail} (the token is set in {PREFERENCES})"
    return f"the farm refused {method} {path} ({status}): {detail}"


def _detail(body: bytes) -> str:
    try:
        parsed = json.loads(body)
    except ValueError:
        return body[:300].decode("utf-8", "replace").strip() or "no reason given"
    detail = parsed.get("detail") if isinstance(parsed, dict) else None
    if isinstance(detail, list):  # FastAPI's validation errors
        detail = "; ".join(str(item.get("msg", item)) for item in detail[:3])
    return str(detail or parsed)[:500]


class _CountingReader:
    """A file's bytes for urllib's upload, telling how many went."""

    def __init__(self, fh: Any, on_bytes: Callable[[int], None] | None) -> None:
        self.fh = fh
        self.on_bytes = on_bytes

    def read(self, size: int = -1) -> bytes:
        data: bytes = self.fh.read(size)
        if data and self.on_bytes is not None:
            self.on_bytes(len(data))
        return data


class FarmApi:
    def __init__(self, url: str, token: str = "", ca_cert: str = "", timeout: float = 10.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise FarmError(f"the farm URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._context: ssl.SSLContext | None = None
        if self.url.startswith("https://"):
            self._context = ssl.create_default_context(cafile=ca_cert or None)

    def _open(
        self,
        method: str,
        path: str,
        *,
        data: Any = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            return urllib.request.urlopen(
                request, timeout=timeout or self.timeout, context=self._context
            )
        except urllib.error.HTTPError as exc:
            with exc:
                detail = _detail(exc.read())
            raise FarmRefused(
                refusal_message(method, path.split("?")[0], exc.code, detail), exc.code
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            hint = (
                f"; give the farm's CA certificate in {PREFERENCES}"
                if "CERTIFICATE_VERIFY_FAILED" in str(reason)
                else f". Is the farm running? Check its URL in {PREFERENCES}"
            )
            raise FarmUnreachable(f"cannot reach the farm at {self.url}: {reason}{hint}") from None

    def _json(self, method: str, path: str, body: Any = None, timeout: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        with self._open(method, path, data=data, headers=headers, timeout=timeout) as response:
            raw = response.read()
        try:
            return json.loads(raw)
        except ValueError:
            raise FarmError(f"{method} {path}: the farm's answer is not JSON") from None

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", "/whoami")
        return result

    def missing_files(self, shas: list[str]) -> list[str]:
        """Which of these files the farm lacks, in one request (farm_pack.ship slices)."""
        return list(self._json("POST", "/files/missing", {"files": shas})["missing"])

    def put_file(self, sha: str, path: Path, on_bytes: Callable[[int], None] | None = None) -> None:
        """Stream one file to the farm's file store under its sha256."""
        headers = {
            "Content-Length": str(path.stat().st_size),
            "Content-Type": "application/octet-stream",
        }
        with path.open("rb") as fh:
            body = _CountingReader(fh, on_bytes)
            with self._open("PUT", f"/files/{sha}", data=body, headers=headers, timeout=600):
                pass

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json("POST", "/render", body, timeout=60)
        return result

    def job(self, job_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._json("GET", f"/render/{urllib.parse.quote(job_id)}")
        return result

    def jobs(self) -> list[dict[str, Any]]:
        return list(self._json("GET", "/render"))

    def done_frames(self, job_id: str) -> list[int]:
        result = self._json("GET", f"/render/{urllib.parse.quote(job_id)}/frames?state=done")
        return [int(item["frame"]) for item in result["frames"]]

    def download_frame(self, job_id: str, frame: int, target: Path) -> None:
        """One frame's image into `target`, whole or not at all (a temp file renamed)."""
        path = f"/render/{urllib.parse.quote(job_id)}/frames/{frame}"
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as out, self._open("GET", path, timeout=120) as response:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
            os.replace(tmp, target)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise FarmError(f"frame {frame} of job {job_id} did not download: {exc}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
