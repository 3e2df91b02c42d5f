"""A packed tree's paths and file names, by the same rules on every side: the client that
packs, the orchestrator that checks a manifest, the node that lays the tree out. A path must
never reach outside the folder it is laid out in; a file is named by the sha256 of its bytes."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_PATH_CHARS = 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


def manifest_path_problem(path: str) -> str | None:
    """Why `path` cannot name a file of a packed tree, or None when it can: relative, '/' as
    the only separator, no '.', '..' or empty parts, no drive letters or control characters."""
    if not path or len(path) > MAX_PATH_CHARS:
        return f"must be 1 to {MAX_PATH_CHARS} characters"
    if path.startswith("/") or _DRIVE.match(path):
        return "must be relative to the shot's folder, not absolute"
    if "\\" in path:
        return "must use '/' between folders"
    if any(ord(c) < 32 or c == "\x7f" for c in path):
        return "must not contain control characters"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "must not contain '..', '.' or empty parts"
    return None


def file_sha256(path: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """A file's sha256 (hex) and size, read a chunk at a time; blocking."""
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while data := fh.read(chunk):
            digest.update(data)
            size += len(data)
    return digest.hexdigest(), size
