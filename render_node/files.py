"""The node's own copies of packed shots' files, and the trees its jobs render from.

The orchestrator pushes the files a job's manifest names and the node lacks; the job's tree
is laid out from them by hard links (no copy per job) under the job's folder, and Blender
renders the main .blend there. The store stays within --file-store-mb: the files used least
recently go first, never one a queued or running job needs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from farm_common.blobs import BlobStore
from farm_common.errors import NotFound
from farm_common.manifest import Manifest

log = logging.getLogger(__name__)


class FileStore(BlobStore):
    def __init__(
        self,
        root: Path,
        max_file_bytes: int,
        max_bytes: int,
        needed: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        super().__init__(root, max_file_bytes)
        self.max_bytes = max_bytes
        self.needed = needed  # the files of the node's queued and running jobs

    def check_complete(self, manifest: Manifest) -> None:
        """404 naming the files of `manifest` this node does not hold (the orchestrator pushes
        them and asks again)."""
        lacking = self.missing(manifest.files.values())
        if lacking:
            shown = ", ".join(s[:12] for s in lacking[:5])
            raise NotFound(
                f"this node lacks {len(lacking)} file(s) of the manifest ({shown}"
                f"{', ...' if len(lacking) > 5 else ''}): PUT /files/SHA256 each first"
            )

    def lay_out(self, manifest: Manifest, tree: Path) -> Path:
        """Make `tree` hold the manifest's files (hard links to the store); returns the main
        file's path. Blocking. `tree` must not exist: every folder in it is made here, so no
        path can pass through a link to elsewhere."""
        tree.mkdir(parents=True)
        root = tree.resolve()
        now = time.time()
        for rel, sha in sorted(manifest.files.items()):
            dest = root / rel
            if not dest.resolve().is_relative_to(root):
                raise NotFound(f"manifest path {rel[:120]!r} leads outside the job's folder")
            dest.parent.mkdir(parents=True, exist_ok=True)
            source = self.path(sha)
            try:
                os.link(source, dest, follow_symlinks=False)
            except FileNotFoundError:
                raise NotFound(
                    f"file {sha[:12]} ({rel[:120]}) left this node's store: push it again"
                ) from None
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                shutil.copyfile(source, dest)  # another file system, or links not allowed
            with contextlib.suppress(OSError):
                os.utime(source, (now, source.stat().st_mtime))  # last use, for eviction
        return root / manifest.main

    def evict(self) -> tuple[int, int]:
        """Delete least recently used files until the store is within its limit, never one a
        queued or running job needs; returns (files, bytes) deleted. Blocking."""
        entries = []
        total = 0
        for path in self.root.glob("??/*"):
            with contextlib.suppress(OSError):
                st = path.stat()
                entries.append((st.st_atime, path, st.st_size))
                total += st.st_size
        if total <= self.max_bytes:
            return 0, 0
        keep = set(self.needed())
        removed = freed = 0
        for _, path, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if path.name in keep:
                continue
            with contextlib.suppress(OSError):
                path.unlink()
                total -= size
                removed += 1
                freed += size
        if removed:
            log.info(
                "file store: %d files (%d MB) evicted (least recently used)", removed, freed >> 20
            )
        if total > self.max_bytes:
            log.warning(
                "file store holds %d MB, over its %d MB limit: all of it is needed by jobs",
                total >> 20,
                self.max_bytes >> 20,
            )
        return removed, freed
