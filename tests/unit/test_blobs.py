import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from farm_common.errors import BadRequest, NotFound, PayloadTooLarge
from farm_common.manifest import Manifest
from render_node.files import FileStore


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def chunks(data: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def save(store: FileStore, data: bytes, name: str | None = None) -> tuple[int, bool]:
    return asyncio.run(store.save(name or sha(data), chunks(data)))


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "files", max_file_bytes=1000, max_bytes=100)


def test_a_file_is_stored_under_its_hash_once(store: FileStore) -> None:
    data = b"texture bytes"
    assert save(store, data) == (len(data), True)
    assert save(store, data) == (len(data), False)  # idempotent: sent again, kept once
    assert store.path(sha(data)).read_bytes() == data
    assert store.missing([sha(data), sha(b"other"), sha(data)]) == [sha(b"other")]
    assert not list(store.root.glob(".upload-*"))


def test_a_body_that_does_not_hash_to_its_name_is_refused_and_not_kept(store: FileStore) -> None:
    with pytest.raises(BadRequest, match="sha256"):
        save(store, b"what was sent", name=sha(b"what was promised"))
    assert not store.has(sha(b"what was promised"))
    assert not list(store.root.glob(".upload-*"))


def test_a_file_over_the_limit_is_refused_while_streaming(store: FileStore) -> None:
    data = b"x" * 1001
    with pytest.raises(PayloadTooLarge, match="larger than the limit"):
        save(store, data)
    assert not store.has(sha(data))


def test_a_tree_is_laid_out_by_hard_links(store: FileStore, tmp_path: Path) -> None:
    blend, tex = b"BLENDER-main", b"PNG-texture"
    save(store, blend)
    save(store, tex)
    manifest = Manifest(
        main="shots/010/shot.blend",
        files={"shots/010/shot.blend": sha(blend), "tex/a.png": sha(tex), "tex/b.png": sha(tex)},
    )
    store.check_complete(manifest)
    main = store.lay_out(manifest, tmp_path / "job" / "tree")
    assert main == (tmp_path / "job" / "tree" / "shots/010/shot.blend").resolve()
    assert main.read_bytes() == blend
    linked = tmp_path / "job" / "tree" / "tex" / "b.png"
    assert os.stat(linked).st_ino == store.path(sha(tex)).stat().st_ino  # no copy per job


def test_a_manifest_the_store_cannot_fill_is_refused_naming_the_count(
    store: FileStore, tmp_path: Path
) -> None:
    manifest = Manifest(main="a.blend", files={"a.blend": sha(b"absent")})
    with pytest.raises(NotFound, match="lacks 1 file"):
        store.check_complete(manifest)


def test_eviction_takes_the_least_recently_used_files_never_needed_ones(tmp_path: Path) -> None:
    needed: set[str] = set()
    store = FileStore(tmp_path / "files", 1000, max_bytes=100, needed=lambda: needed)
    old, mid, new = b"o" * 40, b"m" * 40, b"n" * 40
    for age, data in ((300, old), (200, mid), (100, new)):
        save(store, data)
        path = store.path(sha(data))
        os.utime(path, (path.stat().st_atime - age, path.stat().st_mtime))
    needed.add(sha(old))  # a queued job renders from it: it stays although oldest
    assert store.evict() == (1, 40)
    assert store.has(sha(old)) and not store.has(sha(mid)) and store.has(sha(new))
    assert store.evict() == (0, 0)  # within the limit now
