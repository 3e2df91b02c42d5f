"""Render node: runs headless Blender for batches of frames and reports per-frame status."""

__version__ = "0.1.0"
