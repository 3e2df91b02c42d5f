"""The warm engine's worker: Blender as a Python module (bpy), one long-lived process per slot.

Run by the node as `PYTHON bpy_worker.py` with the Python that has bpy (this file imports
nothing of the farm: that Python may be another environment). It reads requests from stdin
and answers with messages on stdout, one JSON object a line. Blender's own output (C and
Python alike) goes to stderr: the first thing this script does is to keep stdout for the
messages and point fd 1 at stderr.

Requests: `{"op": "open", ...}` loads a scene (auto-exec off) and runs the node's checks on
it; `{"op": "render", "frame": N, "path": STEM}` renders one frame to STEM + extension
(`"border"`: one region of it; `"setup"`: the node's code for the job's frames, run first;
`"develop"`: instead, the node's code saves the image `source` there as the scene's frame);
`{"op": "devices"}` lists the GPUs Cycles sees. Messages: `ready` (version), `opened`,
`started`, `progress`, `log` (our checks' lines), `saved`, `failed`, `devices`. A request that
fails answers `failed` and the worker goes on; the node kills the worker to stop it.
"""

import json
import os
import sys
import time
import traceback

_channel = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
os.dup2(2, 1)
sys.stdout = sys.stderr


def send(event, **fields):
    _channel.write(json.dumps({"event": event, **fields}) + "\n")
    _channel.flush()


GPU_TYPES = ("OPTIX", "CUDA", "HIP", "ONEAPI", "METAL")
_state: dict = {"frame": None, "sample": None, "border": None}


def _check_print(*args, **kwargs):
    """`print` for the node's checks: their lines are messages (and in Blender's log)."""
    line = kwargs.get("sep", " ").join(str(a) for a in args)
    print(line, file=sys.stderr, flush=True)
    send("log", line=line, frame=_state["frame"])


def _on_pre(scene, *args):
    _state["frame"] = scene.frame_current
    _state["sample"] = None
    send("started", frame=scene.frame_current)


def _on_stats(stats, *args):
    text = str(stats)
    marker = text.find("Sample ")
    if marker < 0 or _state["frame"] is None:
        return
    done, _, total = text[marker + 7 :].split(" ", 1)[0].partition("/")
    if done.isdigit() and total.isdigit() and done != _state["sample"]:
        _state["sample"] = done
        send("progress", frame=_state["frame"], sample=int(done), total=int(total))


def devices(bpy):
    """The GPUs Cycles sees, by type; an empty list without any."""
    prefs = bpy.context.preferences.addons["cycles"].preferences
    found = []
    for kind in GPU_TYPES:
        try:
            listed = prefs.get_devices_for_type(kind)
        except Exception:  # a type this build or platform lacks
            continue
        found += [
            {"type": kind, "id": d.id, "name": d.name}
            for d in listed
            if getattr(d, "type", kind) != "CPU"
        ]
    return found


def use_device(bpy, scene, device):
    """Cycles on `device` ({"type": "CUDA", "ids": [...]} or None for the CPU), the way
    Blender documents it: the add-on's compute device type, each device's `use`, and the
    scene's device."""
    if not device:
        if hasattr(scene, "cycles"):
            scene.cycles.device = "CPU"
        return
    prefs = bpy.context.preferences.addons["cycles"].preferences
    prefs.compute_device_type = device["type"]
    prefs.get_devices_for_type(device["type"])
    wanted = set(device.get("ids") or ())
    chosen = 0
    for d in prefs.devices:
        d.use = d.type == device["type"] and (not wanted or d.id in wanted)
        chosen += d.use
    if not chosen:
        raise RuntimeError(f"no {device['type']} device {sorted(wanted)} on this machine")
    scene.cycles.device = "GPU"


def set_format(scene, name):
    settings = scene.render.image_settings
    if hasattr(settings, "media_type"):  # Blender 5: image, multilayer image or video
        settings.media_type = "MULTI_LAYER_IMAGE" if name == "OPEN_EXR_MULTILAYER" else "IMAGE"
    settings.file_format = name


def _run_ours(code, name):
    """Run the node's code (not the file's) in Blender, its prints as `log` messages."""
    exec(compile(code, name, "exec"), {"print": _check_print, "__name__": "farm"})


def open_scene(bpy, request):
    bpy.ops.wm.open_mainfile(filepath=request["scene"], load_ui=False, use_scripts=False)
    scene = bpy.context.scene
    for code in request.get("checks", ()):
        _run_ours(code, "<farm check>")
    if request.get("format"):
        set_format(scene, request["format"])
    threads = request.get("threads") or 0
    scene.render.threads_mode = "FIXED" if threads else "AUTO"
    if threads:
        scene.render.threads = threads
    if scene.render.engine == "CYCLES":
        use_device(bpy, scene, request.get("device"))
    bpy.app.handlers.render_pre.append(_on_pre)
    bpy.app.handlers.render_stats.append(_on_stats)
    r = scene.render
    _state["border"] = (r.use_border, r.use_crop_to_border, r.border_min_x, r.border_max_x,
                        r.border_min_y, r.border_max_y)  # fmt: skip
    return scene


def set_border(scene, border):
    """Render `border` (min_x, max_x, min_y, max_y) of the frame, cropped to it; None: the
    scene's own border settings, as it was opened."""
    r = scene.render
    if border is None:
        use, crop, *edges = _state["border"]
    else:
        use, crop, edges = True, True, border
    r.border_min_x, r.border_max_x, r.border_min_y, r.border_max_y = 0.0, 1.0, 0.0, 1.0
    r.border_min_x, r.border_max_x = edges[0], edges[1]
    r.border_min_y, r.border_max_y = edges[2], edges[3]
    r.use_border, r.use_crop_to_border = use, crop


def render(bpy, scene, request):
    frame = request["frame"]
    # A still is written to `filepath` as it is (no # filled in) plus the format's extension.
    scene.render.filepath = request["path"]
    path = request["path"]
    if scene.render.use_file_extension:
        path += scene.render.file_extension
    set_border(scene, request.get("border"))
    for code in request.get("setup", ()):  # a job's settings for every frame (its samples)
        _run_ours(code, "<farm setup>")
    scene.frame_set(frame)
    start = time.monotonic()
    develop = request.get("develop")
    if develop:  # the frame is an image it is given, saved as the scene saves a render
        send("started", frame=frame)
        exec(compile(develop["code"], "<farm develop>", "exec"),
             {"bpy": bpy, "s": scene, "source": develop["source"], "path": path})  # fmt: skip
    else:
        bpy.ops.render.render(write_still=True)
    seconds = round(time.monotonic() - start, 3)
    _state["frame"] = None
    return path, seconds


def main():
    start = time.monotonic()
    import bpy

    send("ready", version=bpy.app.version_string, seconds=round(time.monotonic() - start, 3))
    scene = None
    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        op = request.get("op")
        try:
            if op == "open":
                began = time.monotonic()
                scene = open_scene(bpy, request)
                send("opened", seconds=round(time.monotonic() - began, 3))
            elif op == "render":
                if scene is None:
                    raise RuntimeError("no scene is open")
                path, seconds = render(bpy, scene, request)
                send("saved", frame=request["frame"], path=path, seconds=seconds)
            elif op == "devices":
                send("devices", devices=devices(bpy))
            else:
                raise ValueError(f"unknown request {op!r}")
        except SystemExit as exc:  # a check said no: its Error: line was a `log` message
            send("failed", op=op, frame=request.get("frame"), code=exc.code, error=None)
        except Exception as exc:
            traceback.print_exc()
            message = str(exc).strip().splitlines()
            send("failed", op=op, frame=request.get("frame"), code=None,
                 error=message[-1] if message else type(exc).__name__)  # fmt: skip
            _state["frame"] = None


if __name__ == "__main__":
    main()
