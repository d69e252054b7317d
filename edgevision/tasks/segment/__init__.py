"""Semantic segmentation: a class per pixel from a light decoder; the mask goes back onto the
frame through the inverse of the bundle's resize in the runtime."""
