"""Which source a URI names: its scheme, or for a bare path, what the path looks like."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qsl

from edgevision.data.images import IMAGE_EXTENSIONS

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
_GLOB_CHARS = frozenset("*?[")


def split_query(uri: str) -> tuple[str, dict[str, str]]:
    """'synthetic://?fps=15&seed=0' → ('synthetic://', {'fps': '15', 'seed': '0'})."""
    base, sep, query = uri.partition("?")
    return base, dict(parse_qsl(query, keep_blank_values=True)) if sep else {}


_QUERY = re.compile(r"\?[A-Za-z_]\w*=[^/]*$")  # '?loop=1&x=2' at the end: options, not a glob


def _is_images(uri: str) -> bool:
    uri = _QUERY.sub("", uri)
    if any(c in uri for c in _GLOB_CHARS):
        return True
    path = Path(uri)
    return path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS


# A URI without "scheme://" is classified by the first rule that matches (order matters).
BARE_RULES: tuple[tuple[Callable[[str], bool], str], ...] = (
    (lambda u: u.startswith("gst:"), "gst"),
    (lambda u: u.isdigit() or u.startswith("/dev/video") or u.startswith("/dev/v4l/"), "v4l2"),
    (_is_images, "images"),
    (lambda u: True, "file"),
)


def scheme_of(uri: str) -> str:
    """The scheme of ``uri`` ('rtsp', 'v4l2', ...) or, for a bare path, the kind it looks like."""
    uri = os.fspath(uri)
    match = _SCHEME.match(uri)
    if match:
        return match.group(1).lower()
    return next(scheme for rule, scheme in BARE_RULES if rule(uri))
