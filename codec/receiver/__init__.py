"""Receivers: identity frame + low-resolution frames + audio -> 256x256, 25 fps video."""
