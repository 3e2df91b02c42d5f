"""Build the add-on's zip (`make addon`): the add-on, the shot packer it shares with `farm`
(farm_pack), and the blender-asset-tracer wheel, in one `farm_submit/` folder that Blender
4.2+ installs as an extension and Blender 3.x as a legacy add-on.

    python blender_addon/build.py --wheels DIR [--out dist]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
PACKAGE = "farm_submit"
SHARED = "farm_pack"  # bundled inside the add-on, as farm_submit.farm_pack
BUNDLED_WHEELS = ("blender_asset_tracer",)


def manifest_with_wheels(text: str, wheels: list[str]) -> str:
    """The manifest with `wheels = [...]` among its top-level keys (before the first table)."""
    line = "wheels = [" + ", ".join(f'"./wheels/{name}"' for name in wheels) + "]\n"
    lines = text.splitlines(keepends=True)
    first_table = next((i for i, s in enumerate(lines) if s.lstrip().startswith("[")), len(lines))
    return "".join([*lines[:first_table], line, "\n", *lines[first_table:]])


def sources(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts
        and p.suffix in (".py", ".toml")
    )  # fmt: skip


def find_wheels(folder: Path) -> list[Path]:
    """The wheels of the versions `farm` itself runs with (this Python's)."""
    found = []
    for name in BUNDLED_WHEELS:
        version = importlib.metadata.version(name.replace("_", "-"))
        wheel = folder / f"{name}-{version}-py3-none-any.whl"
        if not wheel.is_file():
            raise FileNotFoundError(f"{wheel} is missing: `make addon` downloads it")
        found.append(wheel)
    return found


def build(wheels_dir: Path, out: Path) -> Path:
    manifest_text = (HERE / PACKAGE / "blender_manifest.toml").read_text()
    version = tomllib.loads(manifest_text)["version"]
    wheels = find_wheels(wheels_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{PACKAGE}-{version}.zip"
    part = target.with_suffix(".zip.part")
    with zipfile.ZipFile(part, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sources(HERE / PACKAGE):
            rel = path.relative_to(HERE)
            if path.name == "blender_manifest.toml":
                text = manifest_with_wheels(manifest_text, [w.name for w in wheels])
                zf.writestr(rel.as_posix(), text)
            else:
                zf.write(path, rel.as_posix())
        for path in sources(REPO / SHARED):
            zf.write(path, f"{PACKAGE}/{SHARED}/{path.relative_to(REPO / SHARED).as_posix()}")
        for wheel in wheels:
            zf.write(wheel, f"{PACKAGE}/wheels/{wheel.name}")
    part.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True, help="folder with the wheels")
    parser.add_argument("--out", type=Path, default=REPO / "dist", help="where the zip goes")
    args = parser.parse_args(argv)
    print(build(args.wheels, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
