import re

import pytest
from pydantic import ValidationError

from farm_common.manifest import Manifest
from farm_pack.tree import manifest_path_problem

SHA = "a" * 64
OTHER = "b" * 64


@pytest.mark.parametrize(
    "path",
    [
        "shot.blend",
        "shots/010/shot.blend",
        "_outside_project/mnt/tex/wood.png",
        "tex/seq/glow_0001.png",
    ],
)
def test_relative_paths_name_files_of_a_tree(path: str) -> None:
    assert manifest_path_problem(path) is None
    assert path in Manifest(main="a.blend", files={"a.blend": SHA, path: OTHER}).files


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("", "1 to"),
        ("/etc/passwd", "not absolute"),
        ("C:/textures/wood.png", "not absolute"),
        ("../outside.blend", "'..'"),
        ("tex/../../x.png", "'..'"),
        ("tex//x.png", "empty parts"),
        ("./x.png", "'.'"),
        ("tex/", "empty parts"),
        ("tex\\x.png", "'/'"),
        ("tex/x\x00.png", "control"),
        ("a" * 1025, "1 to"),
    ],
)
def test_paths_that_could_leave_the_tree_are_refused(path: str, why: str) -> None:
    problem = manifest_path_problem(path)
    assert problem is not None and why in problem
    with pytest.raises(ValidationError, match=re.escape(why)):
        Manifest(main="a.blend", files={"a.blend": SHA, path: OTHER})


def test_a_manifest_names_its_main_file_among_its_files() -> None:
    manifest = Manifest(main="shots/a.blend", files={"shots/a.blend": SHA, "tex/w.png": OTHER})
    assert manifest.blobs() == {SHA, OTHER}
    with pytest.raises(ValidationError, match="not one of the manifest's files"):
        Manifest(main="shots/b.blend", files={"shots/a.blend": SHA})
    with pytest.raises(ValidationError, match=r"must be a \.blend"):
        Manifest(main="tex/w.png", files={"tex/w.png": SHA})


@pytest.mark.parametrize(
    "files",
    [
        {"a.blend": SHA, "../x.png": OTHER},
        {"a.blend": SHA, "/abs/x.png": OTHER},
        {"a.blend": "not-a-sha"},
        {"a.blend": SHA.upper()},
    ],
)
def test_a_manifest_with_a_bad_path_or_hash_is_refused(files: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Manifest(main="a.blend", files=files)


def test_a_path_cannot_be_both_a_file_and_a_folder() -> None:
    with pytest.raises(ValidationError, match="both a file and a folder"):
        Manifest(main="a.blend", files={"a.blend": SHA, "tex": OTHER, "tex/w.png": OTHER})
    with pytest.raises(ValidationError, match="both a file and a folder"):
        Manifest(main="a.blend", files={"a.blend": SHA, "t/u": OTHER, "t/u/v/w.png": OTHER})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        Manifest.model_validate({"main": "a.blend", "files": {"a.blend": SHA}, "root": "/"})
