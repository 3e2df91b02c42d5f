"""Packing scenes/shot with BAT (no Blender needed: BAT reads the .blend files)."""

import shutil
from pathlib import Path

import pytest

from farm_pack.pack import PackError, UnreadableBlend, hash_files, pack_shot

SHOT = Path(__file__).resolve().parents[2] / "scenes" / "shot"
MAIN = "shots/010/shot.blend"
EXPECTED = {
    MAIN,
    "lib/props.blend",
    "tex/wood.png",  # the library's own texture
    "tex/checker.png",
    "cache/wave.abc",
    *(f"tex/seq/glow_{n:04d}.png" for n in range(1, 7)),
}


def test_a_shot_is_packed_with_every_file_it_needs_recursively() -> None:
    with pack_shot(SHOT / MAIN) as pack:
        assert pack.project == SHOT  # the folder its // paths reach
        assert pack.main == MAIN
        assert {f.rel for f in pack.files} == EXPECTED
        assert pack.missing == [] and pack.outside == []
        hash_files(pack)
        # Nothing needed rewriting: every file is read where it is.
        assert all(f.source == SHOT / f.rel for f in pack.files)
        assert pack.manifest["main"] == MAIN


def test_a_missing_file_is_reported_not_packed(tmp_path: Path) -> None:
    project = tmp_path / "shot"
    shutil.copytree(SHOT, project)
    (project / "tex" / "checker.png").unlink()
    with pack_shot(project / MAIN) as pack:
        assert pack.missing == [project / "tex" / "checker.png"]
        assert "tex/checker.png" not in {f.rel for f in pack.files}


def test_files_outside_a_narrower_project_are_packed_apart_and_listed() -> None:
    with pack_shot(SHOT / MAIN, project=SHOT / "shots") as pack:
        outside = {str(p) for p in pack.outside}
        assert str(SHOT / "lib" / "props.blend") in outside
        rels = {f.rel for f in pack.files}
        assert "010/shot.blend" in rels
        assert any(r.startswith("_outside_project/") and r.endswith("props.blend") for r in rels)
        hash_files(pack)
        rewritten = next(f for f in pack.files if f.rel == "010/shot.blend")
        assert rewritten.source != SHOT / MAIN  # BAT rewrote its paths, in our temp folder
        kept = rewritten.source
    assert not kept.exists()  # and it is gone with the pack


def test_the_shot_must_lie_inside_its_project(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="not inside"), pack_shot(SHOT / MAIN, project=tmp_path):
        pass


def test_a_file_that_is_no_blend_cannot_be_traced(tmp_path: Path) -> None:
    fake = tmp_path / "fake.blend"
    fake.write_bytes(b"BLENDER-v300 but nothing else")
    with pytest.raises(UnreadableBlend), pack_shot(fake):
        pass
