"""Builds the sample scenes in this folder.

Run with: blender -b --factory-startup --python scenes/build.py
Saved by Blender 3.4 so that every later version opens them. Denoising stays off because
Debian's Blender is built without OpenImageDenoise.
"""

import math
import os
import sys

import bpy

HERE = os.path.dirname(os.path.abspath(__file__))


def reset() -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
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

    bpy.ops.object.camera_add(location=(6, -6, 4.5))
    camera = bpy.context.object
    constraint = camera.constraints.new("TRACK_TO")
    constraint.target = cube
    constraint.track_axis = "TRACK_NEGATIVE_Z"
    constraint.up_axis = "UP_Y"
    scene.camera = camera

    bpy.ops.wm.save_as_mainfile(filepath=path, compress=False)


def main() -> None:
    build_demo(os.path.join(HERE, "demo.blend"))
    print("built", os.path.join(HERE, "demo.blend"), file=sys.stderr)


if __name__ == "__main__":
    main()
