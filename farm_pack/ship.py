"""Sending a packed shot to the farm: what to warn of, which files the farm lacks, what the
submit carries. The `farm` CLI and the Blender add-on each bring their own HTTP client; both
go through these steps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .pack import Pack, PackedFile

# POST /files/missing takes at most 20,000 sha256s a request; a shot is asked in slices.
ASKED_AT_ONCE = 10_000


class FarmFiles(Protocol):
    """The farm's file store as a client reaches it (POST /files/missing, PUT /files/SHA)."""

    def missing_files(self, shas: list[str]) -> list[str]:
        """Which of these files (one request's worth) the farm lacks."""
        ...

    def put_file(
        self, sha: str, path: Path, on_bytes: Callable[[int], None] | None = None
    ) -> None: ...


@dataclass
class Upload:
    """The files of a pack the farm lacks (one per sha256), and what it holds already."""

    files: list[PackedFile]
    bytes: int
    held_files: int
    held_bytes: int


def pack_warnings(pack: Pack) -> list[str]:
    """What the job should show of its packing: files from outside the project, and the
    missing files the submitter chose to render without."""
    return [f"packed from outside the project: {path}" for path in pack.outside] + [
        f"missing when packed: {path}" for path in pack.missing
    ]


def missing_files_message(pack: Pack, shown: int = 5) -> str:
    """One line for a shot that must not go: how many files are missing, and which."""
    names = ", ".join(str(path) for path in pack.missing[:shown])
    more = f" and {len(pack.missing) - shown} more" if len(pack.missing) > shown else ""
    return f"{len(pack.missing)} file(s) the shot needs are missing: {names}{more}"


def plan_upload(farm: FarmFiles, pack: Pack) -> Upload:
    """Ask the farm which of the pack's files (hashed) it lacks."""
    shas = sorted({f.sha256 for f in pack.files})
    lacking: set[str] = set()
    for start in range(0, len(shas), ASKED_AT_ONCE):
        lacking.update(farm.missing_files(shas[start : start + ASKED_AT_ONCE]))
    to_send = {f.sha256: f for f in pack.files if f.sha256 in lacking}
    send_bytes = sum(f.size for f in to_send.values())
    return Upload(
        files=list(to_send.values()),
        bytes=send_bytes,
        held_files=len(pack.files) - len(to_send),
        held_bytes=pack.total_bytes - send_bytes,
    )


def send(farm: FarmFiles, upload: Upload, on_bytes: Callable[[int], None] | None = None) -> None:
    for item in upload.files:
        farm.put_file(item.sha256, item.source, on_bytes)
