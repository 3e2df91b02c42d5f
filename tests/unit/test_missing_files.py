"""The node's watch for files a scene needs: our asset check inside Blender, and the lines
(ours and Blender's) that say a file is missing."""

import contextlib
import io
import sys
import types
from pathlib import Path

import pytest

from farm_common.protocol import image_format
from render_node.blender import MissingFile, OutputParser, build_command, version_refusal
from render_node.scene_checks import MISSING_EXIT_CODE, asset_check, path_map_expr


@pytest.mark.parametrize(
    ("line", "kind", "path"),
    [
        ("farm: missing image '/n/tree/tex/checker.png'", "image", "/n/tree/tex/checker.png"),
        ("farm: missing movie clip '/m/clip.mov'", "movie clip", "/m/clip.mov"),
        ("""farm: missing library "/it's/props.blend\"""", "library", "/it's/props.blend"),
        (
            "00:00.120  render           | farm: missing cache '/c/wave.abc'",
            "cache",
            "/c/wave.abc",
        ),
    ],
)
def test_lines_naming_a_missing_file_are_read(line: str, kind: str, path: str) -> None:
    assert OutputParser().feed(line) == [MissingFile(None, path, kind)]


def test_a_sequence_file_missing_names_its_frame() -> None:
    parser = OutputParser()
    parser.feed("Saved: '/o/frame_00002.png'")
    assert parser.feed("farm: missing image '/t/glow_0003.png' (frame 3)") == [
        MissingFile(3, "/t/glow_0003.png", "image")
    ]


def test_a_file_missing_while_rendering_belongs_to_that_frame() -> None:
    parser = OutputParser()
    parser.feed("Fra:3 Mem:10.00M | Time:00:00.01 | Syncing Cube")
    assert parser.feed("farm: missing image '/t/glow_0003.png'") == [
        MissingFile(3, "/t/glow_0003.png", "image")
    ]


@pytest.mark.parametrize(
    "line",
    [
        "Read library:  '/x/props.blend', '//../lib/props.blend'",
        "farm: File Output node 'x'",
        # Blender's own, before --path-map may find the library elsewhere: our check decides.
        "Warning: Unable to open '/p/lib/props.blend': No such file or directory",
        "Info: Cannot find lib '/p/lib/props.blend'",
    ],
)
def test_other_lines_name_nothing_missing(line: str) -> None:
    assert not any(isinstance(e, MissingFile) for e in OutputParser().feed(line))


def _stand_in_bpy(images: list[str], libraries: list[str]) -> types.ModuleType:
    bpy = types.ModuleType("bpy")
    bpy.data = types.SimpleNamespace(  # type: ignore[attr-defined]
        libraries=[types.SimpleNamespace(filepath=p, parent=None, library=None) for p in libraries],
        images=[
            types.SimpleNamespace(source="FILE", filepath=p, packed_file=None, library=None)
            for p in images
        ],
        cache_files=[],
        node_groups=[],
    )
    bpy.path = types.SimpleNamespace(  # type: ignore[attr-defined]
        abspath=lambda path, start=None, library=None: path
    )
    bpy.app = types.SimpleNamespace(  # type: ignore[attr-defined]
        handlers=types.SimpleNamespace(render_pre=[])
    )
    return bpy


def run_check(allow: bool, images: list[str], libraries: list[str]) -> tuple[str, int | None]:
    out = io.StringIO()
    code = None
    saved = sys.modules.get("bpy")
    sys.modules["bpy"] = _stand_in_bpy(images, libraries)
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(asset_check(allow), "<asset check>", "exec"), {"__name__": "__main__"})
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        if saved is None:
            sys.modules.pop("bpy", None)
        else:
            sys.modules["bpy"] = saved
    return out.getvalue(), code


def test_the_asset_check_lists_missing_files_and_stops_blender(tmp_path: Path) -> None:
    present = tmp_path / "wood.png"
    present.write_bytes(b"png")
    text, code = run_check(
        False, [str(present), str(tmp_path / "checker.png")], [str(tmp_path / "props.blend")]
    )
    assert code == MISSING_EXIT_CODE
    assert f"farm: missing image '{tmp_path / 'checker.png'}'" in text
    assert f"farm: missing library '{tmp_path / 'props.blend'}'" in text
    assert "wood.png" not in text.replace(str(tmp_path / "checker.png"), "")
    assert "Error: 2 file(s) the scene needs are missing" in text


def test_the_asset_check_lets_an_allowed_job_render_on(tmp_path: Path) -> None:
    text, code = run_check(True, [str(tmp_path / "checker.png")], [])
    assert code is None
    assert "farm: missing image" in text and "Error:" not in text


def test_a_complete_scene_passes_the_asset_check_silently(tmp_path: Path) -> None:
    present = tmp_path / "wood.png"
    present.write_bytes(b"png")
    assert run_check(False, [str(present)], []) == ("", None)


def test_the_scene_format_holds_unless_one_is_asked_for() -> None:
    own = build_command("blender", Path("a.blend"), Path("o"), [1], image_format("exr"), 0,
                        set_format=False)  # fmt: skip
    asked = build_command("blender", Path("a.blend"), Path("o"), [1], image_format("exr"), 0)
    assert "-F" not in own
    assert asked[asked.index("-F") + 1] == "OPEN_EXR"


def test_a_path_map_runs_before_the_asset_check() -> None:
    cmd = build_command("blender", Path("a.blend"), Path("o"), [1], image_format("png"), 0,
                        path_map=[("/mnt/projects", "/studio")])  # fmt: skip
    exprs = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--python-expr"]
    mapped = exprs.index(path_map_expr([("/mnt/projects", "/studio")]))
    assert mapped < exprs.index(asset_check(False))


def test_the_path_map_rewrites_absolute_paths_only() -> None:
    image = types.SimpleNamespace(filepath="/mnt/projects/tex/a.png", library=None)
    relative = types.SimpleNamespace(filepath="//tex/b.png", library=None)
    elsewhere = types.SimpleNamespace(filepath="/mnt/projectsX/c.png", library=None)
    bpy = types.ModuleType("bpy")
    bpy.data = types.SimpleNamespace(  # type: ignore[attr-defined]
        libraries=[], images=[image, relative, elsewhere]
    )
    saved = sys.modules.get("bpy")
    sys.modules["bpy"] = bpy
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            exec(path_map_expr([("/mnt/projects/", "/studio")]), {"__name__": "__main__"})
    finally:
        if saved is None:
            sys.modules.pop("bpy", None)
        else:
            sys.modules["bpy"] = saved
    assert image.filepath == "/studio/tex/a.png"
    assert relative.filepath == "//tex/b.png"
    assert elsewhere.filepath == "/mnt/projectsX/c.png"


@pytest.mark.parametrize(
    ("saved", "blender", "refused"),
    [
        ((5, 0), "3.4.1", True),
        ((4, 2), "4.1.0", True),
        ((3, 4), "3.4.1", False),
        ((3, 6), "4.2.3", False),
        ((2, 79), "3.4.1", False),
        (None, "3.4.1", False),
        ((5, 0), None, False),
    ],
)
def test_a_node_refuses_a_scene_saved_by_a_newer_blender(
    saved: tuple[int, int] | None, blender: str | None, refused: bool
) -> None:
    why = version_refusal(saved, blender)
    assert (why is not None) == refused
    if why:
        assert f"saved by Blender {saved[0]}.{saved[1]}" in why and blender in why  # type: ignore[index, operator]
