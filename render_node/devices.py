"""Which device each render slot uses: `--device` and `--gpus` against the GPUs Cycles finds.
Pure: the discovery itself runs in Blender (`DEVICES_EXPR`, bpy_worker.devices).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

DeviceChoice = Literal["auto", "cpu", "cuda", "optix", "hip", "oneapi", "metal"]
# For `auto`: the first type with a device wins (OptiX before CUDA on the same NVIDIA card).
GPU_ORDER = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")

# For the binary engine: Blender lists the GPUs Cycles sees as one line of JSON.
DEVICES_EXPR = """\
import json, bpy
_prefs = bpy.context.preferences.addons['cycles'].preferences
_found = []
for _kind in GPU_ORDER_HERE:
    try:
        _listed = _prefs.get_devices_for_type(_kind)
    except Exception:
        continue
    _found += [{'type': _kind, 'id': d.id, 'name': d.name} for d in _listed if d.type != 'CPU']
print('farm-devices: ' + json.dumps(_found), flush=True)
""".replace("GPU_ORDER_HERE", repr(GPU_ORDER))

# For the binary engine, after the scene is loaded: Cycles on the slot's device, the way
# Blender documents it (the add-on's compute device type, each device's `use`).
USE_DEVICE_EXPR = """\
import bpy
_device = %r
_prefs = bpy.context.preferences.addons['cycles'].preferences
_prefs.compute_device_type = _device['type']
_prefs.get_devices_for_type(_device['type'])
_ids = set(_device['ids'])
_n = 0
for _d in _prefs.devices:
    _d.use = _d.type == _device['type'] and (not _ids or _d.id in _ids)
    _n += _d.use
if not _n:
    print('Error: no %%s device %%s on this node' %% (_device['type'], sorted(_ids)), flush=True)
    raise SystemExit(5)
for _scene in bpy.data.scenes:
    if _scene.render.engine == 'CYCLES':
        _scene.cycles.device = 'GPU'
"""


class DeviceError(ValueError):
    """The devices asked for are not on this node; the message says what is."""


def plan_slots(
    choice: DeviceChoice, gpus: Sequence[int], found: Sequence[dict[str, Any]], slots: int
) -> list[dict[str, Any] | None]:
    """Each slot's device: None for the CPU, else {"type", "ids", "names"} (no ids: every
    device of the type). `--gpus` gives a slot per listed GPU (indices among the type's)."""
    if choice == "cpu":
        if gpus:
            raise DeviceError("--gpus needs a GPU --device (or auto), not cpu")
        return [None] * slots
    by_type: dict[str, list[dict[str, Any]]] = {}
    for device in found:
        by_type.setdefault(str(device.get("type")), []).append(device)
    if choice == "auto":
        kind = next((t for t in GPU_ORDER if by_type.get(t)), None)
        if kind is None:
            if gpus:
                raise DeviceError(f"--gpus {_list(gpus)}: Cycles finds no GPU on this node")
            return [None] * slots
    else:
        kind = choice.upper()
        if not by_type.get(kind):
            seen = ", ".join(sorted(by_type)) or "none"
            raise DeviceError(
                f"--device {choice}: Cycles finds no {kind} device on this node (GPU types "
                f"found: {seen}); check the driver, or use --device auto or cpu"
            )
    listed = by_type[kind]
    if not gpus:
        every = {"type": kind, "ids": [], "names": [str(d.get("name")) for d in listed]}
        return [every] * slots
    plan: list[dict[str, Any] | None] = []
    for index in gpus:
        if not 0 <= index < len(listed):
            raise DeviceError(
                f"--gpus {_list(gpus)}: there is no {kind} GPU {index} here "
                f"({len(listed)} found, numbered from 0)"
            )
        device = listed[index]
        plan.append({"type": kind, "ids": [device.get("id")], "names": [str(device.get("name"))]})
    return plan


def describe(device: dict[str, Any] | None) -> str:
    """'CPU', 'CUDA: NVIDIA RTX 4090' (what /info, `farm nodes` and the dashboard show)."""
    if device is None:
        return "CPU"
    names = device.get("names") or []
    return f"{device['type']}: {', '.join(names)}" if names else str(device["type"])


def kind(devices: Sequence[dict[str, Any] | None]) -> Literal["cpu", "gpu"]:
    """What a job's `"device"` matches: gpu when any slot renders on a GPU."""
    return "gpu" if any(d is not None for d in devices) else "cpu"


def _list(gpus: Sequence[int]) -> str:
    return ",".join(str(g) for g in gpus)
