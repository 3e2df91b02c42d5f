"""Builds the sample scenes in this folder.

Run with: blender -b --factory-startup --python scenes/build.py
Saved by Blender 3.4 so that every later version opens them. Denoising stays off because
Debian's Blender is built without OpenImageDenoise.

Besides demo.blend (24 frames) and demo_still.blend (one heavier 640x480 frame, for split
stills; `-- --still-only` builds it alone) it builds shot/, a small production-like project whose shot depends on
other files the way real shots do: a linked library (with a texture of its own), textures,
an image sequence and an Alembic cache, every one by a relative path (//...). The order
matters: textures, then the library, then the cache, then the shot that uses them all.

Debian's Blender is also built without Alembic, so it can neither write nor read
shot/cache/wave.abc. Under such a Blender the committed wave.abc is kept as it is; to write
it anew, run this file with an Alembic-capable bpy (the "bpy" wheel from PyPI):
    python scenes/build.py --cache-only
"""

import math
import os
import sys

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))
SHOT_ROOT = os.path.join(HERE, "shot")
SHOT_FRAMES = 6
# One grid for the cache and for the shot's base mesh, so the shot shows the same surface
# (flat, at frame 1's topology) where the cache cannot be read.
WAVE_CUTS = 12
WAVE_SIZE = 2.2
GLOW_COLORS = [
    (1.0, 0.15, 0.1),
    (1.0, 0.6, 0.05),
    (0.9, 1.0, 0.1),
    (0.15, 1.0, 0.2),
    (0.1, 0.5, 1.0),
    (0.7, 0.15, 1.0),
]


def reset() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    # Each shot file is saved twice (once to fix its folder for relative paths): no .blend1.
    bpy.context.preferences.filepaths.save_version = 0
    return bpy.context.scene


def cycles_settings(scene: bpy.types.Scene, samples: int, width: int, height: int) -> None:
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 4
    scene.render.resolution_x = width
    scene.render.resolution_y = height
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.use_freestyle = False
    for layer in scene.view_layers:
        layer.cycles.use_denoising = False


def add_world(scene: bpy.types.Scene) -> None:
    world = bpy.data.worlds.new("World")
    world.use_nodes = True
    world.node_tree.nodes["Background"].inputs[0].default_value = (0.05, 0.07, 0.1, 1.0)
    world.node_tree.nodes["Background"].inputs[1].default_value = 0.6
    scene.world = world


def material(name: str, color: tuple[float, float, float]) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    bsdf = mat.node_tree.nodes["Principled BSDF"]
    bsdf.inputs["Base Color"].default_value = (*color, 1.0)
    bsdf.inputs["Roughness"].default_value = 0.4
    return mat


def add_camera(scene: bpy.types.Scene, location: tuple[float, float, float],
               target: bpy.types.Object) -> None:
    """The scene's camera at `location`, aimed at `target` (a Track To constraint)."""
    bpy.ops.object.camera_add(location=location)
    camera = bpy.context.object
    constraint = camera.constraints.new("TRACK_TO")
    constraint.target = target
    constraint.track_axis = "TRACK_NEGATIVE_Z"
    constraint.up_axis = "UP_Y"
    scene.camera = camera


def build_demo(path: str, frames: int = 24) -> None:
    """A cube orbiting and spinning over a floor: 24 frames, 320x240, 16 samples."""
    scene = reset()
    cycles_settings(scene, samples=16, width=320, height=240)
    scene.frame_start = 1
    scene.frame_end = frames
    add_world(scene)

    bpy.ops.mesh.primitive_plane_add(size=12, location=(0, 0, 0))
    bpy.context.object.data.materials.append(material("Floor", (0.6, 0.6, 0.6)))

    bpy.ops.mesh.primitive_cube_add(size=1.2, location=(0, 0, 0.8))
    cube = bpy.context.object
    cube.data.materials.append(material("Cube", (0.9, 0.35, 0.1)))
    for frame in range(1, frames + 1):
        angle = 2 * math.pi * (frame - 1) / frames
        cube.location = (1.6 * math.cos(angle), 1.6 * math.sin(angle), 0.8)
        cube.rotation_euler = (0.0, 0.0, angle * 2)
        cube.keyframe_insert("location", frame=frame)
        cube.keyframe_insert("rotation_euler", frame=frame)

    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6))
    bpy.context.object.data.energy = 3.0
    bpy.context.object.rotation_euler = (0.6, 0.2, 0.8)

    add_camera(scene, (6, -6, 4.5), cube)

    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def build_demo_still(path: str) -> None:
    """One heavier 640x480 frame for split stills (tiles, samples): a ring of spheres around
    a glossy cube on a floor, 128 samples, glossy and transmission bounces. Dither is off, so
    that regions of it stitch into the whole frame bit for bit (dither noise depends on a
    pixel's place in the image buffer)."""
    scene = reset()
    cycles_settings(scene, samples=128, width=640, height=480)
    scene.cycles.max_bounces = 8
    scene.cycles.seed = 0
    scene.render.dither_intensity = 0.0
    scene.frame_start = scene.frame_end = 1
    add_world(scene)

    bpy.ops.mesh.primitive_plane_add(size=14, location=(0, 0, 0))
    bpy.context.object.data.materials.append(material("Floor", (0.55, 0.55, 0.6)))
    bpy.ops.mesh.primitive_cube_add(size=1.4, location=(0, 0, 0.7))
    cube = bpy.context.object
    glossy = material("Gloss", (0.9, 0.9, 0.95))
    glossy.node_tree.nodes["Principled BSDF"].inputs["Metallic"].default_value = 1.0
    glossy.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.15
    cube.data.materials.append(glossy)
    for i, color in enumerate(GLOW_COLORS):
        angle = 2 * math.pi * i / len(GLOW_COLORS)
        bpy.ops.mesh.primitive_uv_sphere_add(
            radius=0.45, location=(2.4 * math.cos(angle), 2.4 * math.sin(angle), 0.45)
        )
        bpy.ops.object.shade_smooth()
        glass = material(f"Sphere{i}", color)
        glass.node_tree.nodes["Principled BSDF"].inputs["Roughness"].default_value = 0.05
        transmission = glass.node_tree.nodes["Principled BSDF"].inputs.get("Transmission")
        if transmission is None:  # Blender 4+: "Transmission Weight"
            transmission = glass.node_tree.nodes["Principled BSDF"].inputs["Transmission Weight"]
        transmission.default_value = 0.8 if i % 2 else 0.0
        bpy.context.object.data.materials.append(glass)

    bpy.ops.object.light_add(type="AREA", location=(2, -3, 5))
    bpy.context.object.data.energy = 600.0
    bpy.context.object.data.size = 2.0
    bpy.ops.object.light_add(type="SUN", location=(-3, 3, 6))
    bpy.context.object.data.energy = 1.5
    bpy.context.object.rotation_euler = (0.5, -0.3, 2.2)

    add_camera(scene, (5.5, -5.5, 3.8), cube)

    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def shot_path(*parts: str) -> str:
    return os.path.join(SHOT_ROOT, *parts)


def save_image(path: str, width: int, height: int, pixels: list[float]) -> None:
    """Writes RGBA float pixels (row by row, bottom row first) as an 8-bit PNG, with bpy only."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    image = bpy.data.images.new(os.path.basename(path), width, height, alpha=False)
    image.pixels.foreach_set(pixels)
    image.filepath_raw = path
    image.file_format = "PNG"
    # save() writes the buffer as it is; save_render() would pass it through the view transform.
    image.save()
    bpy.data.images.remove(image)


def checker_pixels(size: int, cell: int) -> list[float]:
    pixels: list[float] = []
    for y in range(size):
        for x in range(size):
            value = 0.85 if (x // cell + y // cell) % 2 == 0 else 0.12
            pixels += [value, value, value, 1.0]
    return pixels


def wood_pixels(size: int) -> list[float]:
    """Brown rings with a little wobble: enough to see that the library's texture loaded."""
    pixels: list[float] = []
    for y in range(size):
        for x in range(size):
            ring = 0.5 + 0.5 * math.sin(x * 0.6 + 2.0 * math.sin(y * 0.15))
            pixels += [0.35 + 0.35 * ring, 0.18 + 0.2 * ring, 0.06 + 0.08 * ring, 1.0]
    return pixels


def build_textures() -> None:
    reset()
    save_image(shot_path("tex", "checker.png"), 64, 64, checker_pixels(64, 8))
    save_image(shot_path("tex", "wood.png"), 64, 64, wood_pixels(64))
    for number, color in enumerate(GLOW_COLORS, start=1):
        save_image(shot_path("tex", "seq", f"glow_{number:04d}.png"), 16, 16, [*color, 1.0] * 256)


def keep_files_small() -> None:
    """Drops what makes an empty file ~500 KB: ten unused workspaces and the thumbnail."""
    keep = bpy.context.window.workspace
    # Their screens lose their last user and are not written either.
    bpy.data.batch_remove([workspace for workspace in bpy.data.workspaces if workspace != keep])
    bpy.context.preferences.filepaths.file_preview_type = "NONE"


def start_file(path: str) -> bpy.types.Scene:
    """An empty file saved at its final place first, so that bpy.path.relpath is right."""
    scene = reset()
    keep_files_small()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)
    return scene


def load_image(path: str) -> bpy.types.Image:
    image = bpy.data.images.load(path, check_existing=False)
    image.filepath = bpy.path.relpath(path)
    return image


def image_material(name: str, image: bpy.types.Image, scale: float = 1.0) -> bpy.types.Material:
    mat = bpy.data.materials.new(name)
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    if scale != 1.0:
        coords = nodes.new("ShaderNodeTexCoord")
        mapping = nodes.new("ShaderNodeMapping")
        mapping.inputs["Scale"].default_value = (scale, scale, 1.0)
        links.new(coords.outputs["UV"], mapping.inputs["Vector"])
        links.new(mapping.outputs["Vector"], texture.inputs["Vector"])
    links.new(texture.outputs["Color"], nodes["Principled BSDF"].inputs["Base Color"])
    return mat


def build_props_library(path: str) -> None:
    """lib/props.blend: "PropCollection" holding "Prop", textured with ../tex/wood.png."""
    scene = start_file(path)
    collection = bpy.data.collections.new("PropCollection")
    scene.collection.children.link(collection)
    bpy.ops.mesh.primitive_monkey_add(size=1.4, location=(0, 0, 0))
    prop = bpy.context.object
    prop.name = "Prop"
    prop.data.name = "PropMesh"
    bpy.ops.object.shade_smooth()
    for owner in list(prop.users_collection):
        owner.objects.unlink(prop)
    collection.objects.link(prop)
    prop.data.materials.append(image_material("PropMat", load_image(shot_path("tex", "wood.png"))))
    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def wave_grid(name: str) -> bpy.types.Object:
    bpy.ops.mesh.primitive_grid_add(
        x_subdivisions=WAVE_CUTS, y_subdivisions=WAVE_CUTS, size=WAVE_SIZE, location=(0, 0, 0)
    )
    grid = bpy.context.object
    grid.name = name
    grid.data.name = name + "Mesh"
    return grid


def build_wave_cache(path: str) -> None:
    """cache/wave.abc: a grid rippled by a Wave modifier, frames 1-6, the mesh at /Wave/WaveMesh."""
    if not bpy.app.alembic.supported:
        raise SystemExit("this Blender has no Alembic: run with the bpy wheel, --cache-only")
    scene = reset()
    scene.frame_start = 1
    scene.frame_end = SHOT_FRAMES
    grid = wave_grid("Wave")
    wave = grid.modifiers.new("Wave", "WAVE")
    wave.height = 0.25
    wave.width = 0.8
    wave.speed = 0.2
    wave.time_offset = -4.0  # the ripple is already under way at frame 1
    os.makedirs(os.path.dirname(path), exist_ok=True)
    bpy.ops.wm.alembic_export(
        filepath=path,
        start=1,
        end=SHOT_FRAMES,
        selected=False,
        export_hair=False,
        export_particles=False,
        face_sets=False,
        evaluation_mode="RENDER",
    )


def cache_file(path: str) -> bpy.types.CacheFile:
    # bpy.data.cache_files has no load(); the operator makes one even without Alembic support.
    bpy.ops.cachefile.open(filepath=path)
    cache = bpy.data.cache_files[os.path.basename(path)]
    cache.filepath = bpy.path.relpath(path)
    return cache


def sequence_material(first_frame: str) -> bpy.types.Material:
    """Shows glow_000N.png at frame N: an emitting image sequence, so its colour is exact."""
    image = load_image(first_frame)
    image.source = "SEQUENCE"
    mat = bpy.data.materials.new("GlowMat")
    mat.use_nodes = True
    nodes, links = mat.node_tree.nodes, mat.node_tree.links
    texture = nodes.new("ShaderNodeTexImage")
    texture.image = image
    texture.image_user.frame_start = 1
    texture.image_user.frame_offset = 0
    texture.image_user.frame_duration = SHOT_FRAMES
    texture.image_user.use_auto_refresh = True
    texture.image_user.use_cyclic = False
    emission = nodes.new("ShaderNodeEmission")
    emission.inputs["Strength"].default_value = 1.5
    links.new(texture.outputs["Color"], emission.inputs["Color"])
    links.new(emission.outputs["Emission"], nodes["Material Output"].inputs["Surface"])
    nodes.remove(nodes["Principled BSDF"])
    return mat


def link_prop(scene: bpy.types.Scene, library_path: str) -> bpy.types.Object:
    """Links (not appends) PropCollection and instances it with an empty, as a layout would."""
    with bpy.data.libraries.load(library_path, link=True, relative=True) as (_source, target):
        target.collections = ["PropCollection"]
    instance = bpy.data.objects.new("PropInstance", None)
    instance.instance_type = "COLLECTION"
    instance.instance_collection = target.collections[0]
    scene.collection.objects.link(instance)
    return instance


def build_shot(path: str) -> None:
    """shots/010/shot.blend: the prop, a checker floor, the sequence, the cache; 6 frames."""
    scene = start_file(path)
    cycles_settings(scene, samples=8, width=160, height=120)
    scene.render.dither_intensity = 0.0
    scene.render.film_transparent = False
    scene.frame_start = 1
    scene.frame_end = SHOT_FRAMES
    add_world(scene)

    prop = link_prop(scene, shot_path("lib", "props.blend"))
    prop.location = (-1.5, 0.3, 0.9)
    for frame in range(1, SHOT_FRAMES + 1):
        prop.rotation_euler = (0.0, 0.0, math.radians(-30 + 15 * (frame - 1)))
        prop.keyframe_insert("rotation_euler", frame=frame)

    bpy.ops.mesh.primitive_plane_add(size=10, location=(0, 0, 0))
    floor = bpy.context.object
    floor.name = "Floor"
    floor.data.materials.append(
        image_material("FloorMat", load_image(shot_path("tex", "checker.png")), scale=5.0)
    )

    bpy.ops.mesh.primitive_plane_add(
        size=1.4, location=(1.6, 0.8, 1.0), rotation=(math.pi / 2, 0, 0)
    )
    glow = bpy.context.object
    glow.name = "Glow"
    glow.data.materials.append(sequence_material(shot_path("tex", "seq", "glow_0001.png")))

    wave = wave_grid("Wave")
    wave.location = (0.2, -1.2, 0.35)
    wave.data.materials.append(material("WaveMat", (0.1, 0.45, 0.8)))
    modifier = wave.modifiers.new("Cache", "MESH_SEQUENCE_CACHE")
    modifier.cache_file = cache_file(shot_path("cache", "wave.abc"))
    modifier.object_path = "/Wave/WaveMesh"

    bpy.ops.object.light_add(type="SUN", location=(3, -3, 6))
    bpy.context.object.data.energy = 3.0
    bpy.context.object.rotation_euler = (0.6, 0.2, 0.8)

    target = bpy.data.objects.new("CameraTarget", None)
    target.location = (0, 0, 0.6)
    scene.collection.objects.link(target)
    add_camera(scene, (0, -7.5, 4.2), target)

    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def script_args() -> list[str]:
    """The arguments after '--' under Blender; all of them under bpy as a Python module."""
    if bpy.app.binary_path:  # inside Blender, whose own arguments come first
        return sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    return sys.argv[1:]


def main() -> None:
    cache = shot_path("cache", "wave.abc")
    if "--cache-only" in script_args():
        build_wave_cache(cache)
        print("built", cache, file=sys.stderr)
        return
    if "--still-only" in script_args():
        build_demo_still(os.path.join(HERE, "demo_still.blend"))
        print("built", os.path.join(HERE, "demo_still.blend"), file=sys.stderr)
        return

    build_demo(os.path.join(HERE, "demo.blend"))
    print("built", os.path.join(HERE, "demo.blend"), file=sys.stderr)
    build_demo_still(os.path.join(HERE, "demo_still.blend"))
    print("built", os.path.join(HERE, "demo_still.blend"), file=sys.stderr)

    build_textures()
    build_props_library(shot_path("lib", "props.blend"))
    if bpy.app.alembic.supported:
        build_wave_cache(cache)
    elif not os.path.exists(cache):
        print("warning: this Blender has no Alembic; wave.abc not built", file=sys.stderr)
    build_shot(shot_path("shots", "010", "shot.blend"))
    print("built", SHOT_ROOT, file=sys.stderr)


if __name__ == "__main__":
    main()
