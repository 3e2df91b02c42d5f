"""Which Blender a node runs: a `blender` binary, started per batch, or Blender as a Python
module (bpy) in a warm worker per slot. `--blender PATH` names a binary; `--blender bpy` the
bpy installed with the node (`pip install 'blender-farm[bpy]'`); `--blender bpy:PYTHON` the
bpy of another Python (several Blender versions on one host).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from render_node.devices import DEVICES_EXPR

# What the version command prints, parsed like `blender --version`.
BPY_VERSION_EXPR = "import bpy; print('Blender ' + bpy.app.version_string, flush=True)"
BPY_DEVICES_EXPR = "import bpy\n" + DEVICES_EXPR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Engine:
    kind: Literal["binary", "bpy"]
    path: str  # Blender's executable, or the Python that imports bpy

    @property
    def warm(self) -> bool:
        """Whether a slot keeps its scene loaded between batches."""
        return self.kind == "bpy"

    @property
    def name(self) -> str:
        """As /info says it: "blender" or "bpy"."""
        return "bpy" if self.kind == "bpy" else "blender"

    def version_command(self) -> list[str]:
        if self.kind == "bpy":
            return [self.path, "-s", "-c", BPY_VERSION_EXPR]
        return [self.path, "--version"]

    def devices_command(self) -> list[str]:
        """Prints `farm-devices: [...]`: the GPUs Cycles sees."""
        if self.kind == "bpy":
            return [self.path, "-s", "-c", BPY_DEVICES_EXPR]
        return [self.path, "-b", "--factory-startup", "--python-expr", DEVICES_EXPR]


def parse_engine(text: str) -> Engine:
    """`auto`, `bpy`, `bpy:PYTHON` or a Blender executable (a name on PATH or a path).
    `auto`: bpy when it is installed with the node, else `blender` on PATH."""
    if text == "auto":
        text = "bpy" if importlib.util.find_spec("bpy") is not None else "blender"
    if text == "bpy":
        return Engine("bpy", sys.executable)
    if text.startswith("bpy:"):
        return Engine("bpy", _executable(text[4:]))
    return Engine("binary", _executable(text))


def _executable(name: str) -> str:
    """An absolute path, so it is found whatever the working folder."""
    if "/" in name:
        return str(Path(name).expanduser().absolute())
    return shutil.which(name) or name


DEVICES_PREFIX = "farm-devices: "


def discover_devices(
    engine: Engine, env: Mapping[str, str], *, timeout: float
) -> list[dict[str, Any]]:
    """The GPUs Cycles sees with this engine (none when Blender cannot say: logged)."""
    try:
        done = subprocess.run(
            engine.devices_command(),
            capture_output=True,
            timeout=timeout,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot list the GPUs with %s: %s", engine.path, exc)
        return []
    for line in done.stdout.decode("utf-8", "replace").splitlines():
        if line.startswith(DEVICES_PREFIX):
            try:
                found = json.loads(line[len(DEVICES_PREFIX) :])
            except ValueError:
                break
            return [d for d in found if isinstance(d, dict) and "type" in d][:64]
    log.info("%s did not list its GPUs (exit %s): rendering on the CPU", engine.path,
             done.returncode)  # fmt: skip
    return []
