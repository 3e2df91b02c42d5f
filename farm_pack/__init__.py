"""Packing a shot for the farm, shared by the `farm` CLI and the Blender add-on.

Only the standard library and blender-asset-tracer: the add-on bundles this package, and
Blender's Python has no pip. The services take the path rule of a packed tree from `tree`.
Import the modules themselves (`farm_pack.pack`, `farm_pack.ship`, `farm_pack.tree`): `tree`
must stay importable where BAT is not needed.
"""
