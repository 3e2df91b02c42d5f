import asyncio
import gzip
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from farm_common.errors import BadRequest, FarmError, NotFound, PayloadTooLarge, UnsupportedMedia
from render_node.scenes import SceneStore, looks_like_blend

BLEND = b"BLENDER-v304" + b"\x00" * 5000


@pytest.mark.parametrize(
    ("head", "ok"),
    [
        (b"BLENDER-v304REND", True),
        (b"BLENDER_V300", True),
        (gzip.compress(b"BLENDER")[:8], True),
        (b"\x28\xb5\x2f\xfd\x00\x00\x00", True),
        (b"PK\x03\x04zip", False),
        (b"\x89PNG\r\n\x1a\n", False),
        (b"blender", False),
        (b"", False),
    ],
)
def test_blend_magic_accepts_plain_gzip_and_zstd_only(head: bytes, ok: bool) -> None:
    assert looks_like_blend(head) is ok


async def chunks_of(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def store(tmp_path: Path, max_bytes: int = 1 << 20) -> SceneStore:
    scenes = tmp_path / "named"
    scenes.mkdir(exist_ok=True)
    (scenes / "shot.blend").write_bytes(BLEND)
    return SceneStore(tmp_path / "store", scenes, max_bytes)


def save(s: SceneStore, sha: str, data: bytes) -> int:
    return asyncio.run(s.save(sha, chunks_of(data)))


def test_save_verifies_the_hash_and_stores_by_it(tmp_path: Path) -> None:
    s = store(tmp_path)
    sha = hashlib.sha256(BLEND).hexdigest()
    assert save(s, sha, BLEND) == len(BLEND)
    assert asyncio.run(s.has(sha))
    assert asyncio.run(s.resolve(f"sha256:{sha}")).read_bytes() == BLEND
    assert [p.name for p in (tmp_path / "store").iterdir()] == [f"{sha}.blend"]


@pytest.mark.parametrize(
    ("data", "sha", "error", "words"),
    [
        (BLEND, "0" * 64, BadRequest, "sha256 is"),
        (b"%PDF-1.4 hello", None, UnsupportedMedia, "not a .blend"),
        (b"BLEN", None, UnsupportedMedia, "not a .blend"),
        (b"", None, BadRequest, "empty upload"),
        (BLEND * 300, None, PayloadTooLarge, "--max-upload-mb"),
    ],
)
def test_save_refuses_bad_uploads_and_leaves_nothing(
    tmp_path: Path, data: bytes, sha: str | None, error: type[FarmError], words: str
) -> None:
    s = store(tmp_path)
    sha = sha or hashlib.sha256(data).hexdigest()
    with pytest.raises(error, match=words):
        save(s, sha, data)
    assert not any((tmp_path / "store").iterdir())


def test_resolve_finds_named_scenes_under_the_scenes_dir(tmp_path: Path) -> None:
    s = store(tmp_path)
    assert asyncio.run(s.resolve("shot.blend")) == (tmp_path / "named" / "shot.blend").resolve()


@pytest.mark.parametrize(
    ("ref", "error", "words"),
    [
        ("missing.blend", NotFound, "no scene 'missing.blend'"),
        ("../named/shot.blend", BadRequest, "'..'"),
        ("/etc/passwd", BadRequest, "relative"),
        ("shot.txt", BadRequest, ".blend file name"),
        ("sha256:" + "b" * 64, NotFound, "PUT /scenes/"),
        ("sha256:xyz", BadRequest, "not a sha256"),
    ],
)
def test_resolve_refuses_unknown_and_escaping_names(
    tmp_path: Path, ref: str, error: type[FarmError], words: str
) -> None:
    with pytest.raises(error, match=words):
        asyncio.run(store(tmp_path).resolve(ref))


def test_partial_uploads_of_an_earlier_run_are_removed(tmp_path: Path) -> None:
    s = store(tmp_path)
    sha = hashlib.sha256(BLEND).hexdigest()
    save(s, sha, BLEND)
    (tmp_path / "store" / ".upload-dead.tmp").write_bytes(b"BLENDER half")
    assert s.remove_partial_uploads() == 1
    assert [p.name for p in (tmp_path / "store").iterdir()] == [f"{sha}.blend"]
