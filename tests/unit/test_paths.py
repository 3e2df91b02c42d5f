from pathlib import Path

import pytest

from farm_common.errors import BadRequest
from farm_common.paths import check_job_id, check_sha256, scene_path


@pytest.mark.parametrize(
    "name", ["../x.blend", "a/../../x.blend", "/abs.blend", "a\\b.blend", "./x.blend", "", "x.py"]
)
def test_scene_path_refuses_escapes_and_non_blend_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadRequest):
        scene_path(tmp_path, name)


@pytest.mark.parametrize("name", ["demo.blend", "shots/010.blend", "my scene-2.blend"])
def test_scene_path_accepts_names_inside_the_folder(tmp_path: Path, name: str) -> None:
    assert scene_path(tmp_path, name) == (tmp_path / name).resolve()


def test_scene_path_refuses_a_symlink_out_of_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "evil.blend").symlink_to(tmp_path / "outside.blend")
    with pytest.raises(BadRequest, match="outside"):
        scene_path(root, "evil.blend")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("a" * 64, True), ("sha256:" + "A" * 64, True), ("a" * 63, False), ("g" * 64, False)],
)
def test_check_sha256_wants_64_hex_digits(value: str, ok: bool) -> None:
    if ok:
        assert check_sha256(value) == value.lower().removeprefix("sha256:")
    else:
        with pytest.raises(BadRequest):
            check_sha256(value)


@pytest.mark.parametrize(("value", "ok"), [("abc-1_2", True), ("../x", False), ("a" * 65, False)])
def test_check_job_id_allows_only_safe_characters(value: str, ok: bool) -> None:
    if ok:
        assert check_job_id(value) == value
    else:
        with pytest.raises(BadRequest):
            check_job_id(value)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_job_id, "abc\n"),
        (check_job_id, "abc\r"),
        (check_sha256, "a" * 64 + "\n"),
        (check_sha256, "sha256:" + "a" * 64 + "\n"),
    ],
)
def test_ids_with_a_trailing_newline_are_refused(check: object, value: str) -> None:
    # `$` in a regex also matches before a final newline: the checks must use fullmatch.
    with pytest.raises(BadRequest):
        check(value)  # type: ignore[operator]


def test_scene_name_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequest):
        scene_path(tmp_path, "demo.blend\n")
