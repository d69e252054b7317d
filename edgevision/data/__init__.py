"""Datasets and image I/O (torch-free): synthetic road signs, dash-cam video."""

from edgevision.data.images import IMAGE_EXTENSIONS, list_images, read_image

__all__ = ["IMAGE_EXTENSIONS", "list_images", "read_image"]
