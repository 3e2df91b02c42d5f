"""The add-on's zip (`make addon`): what it holds, that its manifest is one Blender takes, and
that nothing in it needs a package Blender's Python lacks."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from blender_addon.build import build, manifest_with_wheels

REPO = Path(__file__).resolve().parents[2]
# What Blender's own Python has: the standard library, bpy and its helper modules.
BLENDER_MODULES = {"bpy", "addon_utils", "bl_operators", "bl_ui", "mathutils"}


@pytest.fixture(scope="module")
def addon_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build(REPO / "dist" / "wheels", tmp_path_factory.mktemp("addon"))
    except FileNotFoundError as exc:
        pytest.fail(f"{exc} (make test runs `make addon` first)")


def test_the_zip_holds_the_addon_the_packer_and_the_bat_wheel_in_one_folder(
    addon_zip: Path,
) -> None:
    names = zipfile.ZipFile(addon_zip).namelist()
    assert all(name.startswith("farm_submit/") for name in names)
    for needed in (
        "farm_submit/__init__.py",
        "farm_submit/blender_manifest.toml",
        "farm_submit/farm_pack/pack.py",
        "farm_submit/farm_pack/ship.py",
        "farm_submit/farm_pack/tree.py",
    ):
        assert needed in names
    wheels = [n for n in names if n.endswith(".whl")]
    assert len(wheels) == 1 and "/blender_asset_tracer-" in wheels[0]
    assert not [n for n in names if "tests/" in n or "/test_" in n or "conftest" in n]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_the_manifest_names_the_bundled_wheel_and_agrees_with_bl_info(addon_zip: Path) -> None:
    zf = zipfile.ZipFile(addon_zip)
    manifest = tomllib.loads(zf.read("farm_submit/blender_manifest.toml").decode())
    assert manifest["id"] == "farm_submit" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0"
    for wheel in manifest["wheels"]:
        assert f"farm_submit/{wheel.removeprefix('./')}" in zf.namelist()
    init = ast.parse(zf.read("farm_submit/__init__.py"))
    bl_info = next(
        ast.literal_eval(node.value)
        for node in init.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "bl_info"
    )
    assert ".".join(map(str, bl_info["version"])) == manifest["version"]
    assert bl_info["blender"] == (3, 4, 0)  # the legacy add-on, for Blender before 4.2
    assert addon_zip.name == f"farm_submit-{manifest['version']}.zip"


def test_blenders_own_validator_accepts_the_zip(addon_zip: Path) -> None:
    spec = importlib.util.find_spec("bpy")
    if spec is None or spec.origin is None:
        pytest.skip("bpy is not installed: its extension validator comes with it")
    validator = next(
        Path(spec.origin).parent.glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py")
    )
    done = subprocess.run(
        [sys.executable, str(validator), "validate", str(addon_zip)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_addon_imports_nothing_blenders_python_lacks(addon_zip: Path) -> None:
    zf = zipfile.ZipFile(addon_zip)
    foreign: set[str] = set()
    for name in zf.namelist():
        if not name.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(zf.read(name))):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            foreign |= {
                f"{name}: {root}"
                for root in roots - sys.stdlib_module_names - BLENDER_MODULES
                if root not in ("blender_asset_tracer", "__future__")
            }
    assert not foreign


@pytest.mark.parametrize(
    ("manifest", "expected"),
    [
        (
            'id = "x"\n\n[permissions]\nnetwork = "y"\n',
            'id = "x"\n\nwheels = ["./wheels/a.whl"]\n\n[permissions]\nnetwork = "y"\n',
        ),
        ('id = "x"\n', 'id = "x"\nwheels = ["./wheels/a.whl"]\n\n'),
    ],
)
def test_the_wheels_line_goes_among_the_top_level_keys(manifest: str, expected: str) -> None:
    text = manifest_with_wheels(manifest, ["a.whl"])
    assert text == expected
    assert tomllib.loads(text)["wheels"] == ["./wheels/a.whl"]
