"""A seeded synthetic road-sign detection dataset: several signs per scene, exact boxes, COCO JSON.

Layout::

    OUT/images/000000.jpg ...   the scenes (JPEG, seeded quality 30-95)
    OUT/annotations.json        COCO: info, images, annotations (bbox [x, y, w, h]), categories
    OUT/synth.json              the parameters (generator, task, seed, images, size, classes)

Each scene is one of the classification dataset's backgrounds (road, photo crop or clutter) with
0-5 signs of `DETECTION_CLASSES` (none in about 10 % of scenes), from far away (about 11 px high
in a 240-px frame) to close (0.55 of the frame height), log-uniform in size, placed at the
roadside anywhere across the frame. About 20 % are partly occluded by foliage or a bar and about
15 % are cut by the image border (up to 40 % of their width or height outside). A placement whose
box overlaps an earlier sign's too much is drawn again.

Boxes are exact and amodal, in COCO's pixel-edge coordinates (pixel ``i`` spans ``[i, i+1]``):
the float extent of the sign's drawn shape (its disc, octagon, triangle, ... mapped through the
same perspective warp as `draw_sign`) clipped to the frame, not widened to whole pixels and not
shrunk by occluders. A sign with under `MIN_VISIBLE_AREA` of its area inside the frame or under
`MIN_BOX_PX` wide or high is placed again (and dropped after a few tries, which is rare).

Every image has its own random generator seeded from ``(seed, index)``: its bytes do not depend on
how many images were generated. The scikit-learn caveat of `edgevision.data.synth` applies (photo
backgrounds need the ``[train]`` extra).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.data.images import read_image
from edgevision.data.render import (
    SIGN_CLASSES,
    camera_effects,
    draw_pole,
    draw_sign,
    ground_y,
    parse_size,
    sign_quad,
    sign_template,
)
from edgevision.data.synth import (
    _background,
    _check_count,
    _check_out,
    _grid,
    _jpeg,
    _occlude,
    _png,
    _rng,
    _scene_meta,
    _split_names,
    _vanishing_point,
    _writing,
)
from edgevision.errors import DataError
from edgevision.fileio import atomic_write_bytes, atomic_write_json, read_json
from edgevision.opencv import cv2

DETECTION_CLASSES: list[str] = list(SIGN_CLASSES)  # a detector has no "background" class
ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
GENERATOR = "edgevision.data.synth_detect"

MIN_SCALE = 0.045  # a far sign: ~11 px high in a 240-px frame
MAX_SCALE = 0.55  # a close one
MAX_SIGNS = 5
MIN_VISIBLE_AREA = 0.35  # of a sign's area inside the frame, or it is placed again
MIN_BOX_PX = 4.0  # narrower or lower visible boxes are placed again

_P_EMPTY = 0.1
_P_OCCLUDED = 0.2
_P_CUT = 0.15
_MAX_CUT = 0.4  # at most this fraction of a cut sign's width (or height) is outside
_MAX_IOU = 0.2
_MAX_COVER = 0.35  # of the smaller box: a far sign must not vanish behind a near one
_TRIES = 12
_MIN_PX = 6.0  # signs are never drawn smaller than this, however small the frame
_OUTLINE_UPSAMPLE = 4
_NAME = "detection"  # the key of the per-image random streams


# ---------------------------------------------------------------------------- exact boxes


@functools.cache
def _outline(name: str) -> np.ndarray:
    """The sign's shape as a convex polygon in template units (0..1 edge coordinates)."""
    _, alpha = sign_template(name)
    n = alpha.shape[0]
    # The half-coverage line of the upsampled alpha: sub-pixel accurate for any template shape.
    big = cv2.resize(alpha, (n * _OUTLINE_UPSAMPLE,) * 2, interpolation=cv2.INTER_LINEAR)
    contours, _ = cv2.findContours(
        (big >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
    )
    hull = cv2.convexHull(np.concatenate(contours).astype(np.float32))
    hull = cv2.approxPolyDP(hull, 0.5, True).reshape(-1, 2).astype(np.float64)
    # Upsampled pixel centre j lies at template edge coordinate (j + 0.5) / upsample.
    return (hull + 0.5) / (_OUTLINE_UPSAMPLE * n)


def sign_polygon(name: str, quad: np.ndarray) -> np.ndarray:
    """The outline (Nx2, pixel-edge coordinates) of sign ``name`` as `draw_sign` draws it."""
    quad = np.asarray(quad, np.float32)
    full = sign_template(name)[1].shape[0]
    edge = float(np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    px = int(np.clip(math.ceil(edge), 8, full))  # the template size draw_sign picks
    src = np.array([[0, 0], [px, 0], [px, px], [0, px]], np.float32)
    m = cv2.getPerspectiveTransform(src, quad)
    # draw_sign maps template pixel centres to frame pixel centres: shift both by half a pixel.
    pts = (_outline(name) * px - 0.5).reshape(1, -1, 2)
    return cv2.perspectiveTransform(pts, m).reshape(-1, 2) + 0.5


def sign_box(name: str, quad: np.ndarray, w: int, h: int) -> tuple[float, list[float] | None]:
    """The fraction of sign ``name``'s area inside a ``w``x``h`` frame and its exact box there.

    The box is ``[x0, y0, x1, y1]`` floats (pixel-edge coordinates, 3 decimals): the extent of
    the drawn shape clipped to the frame; None when no part of it is inside.
    """
    poly = sign_polygon(name, quad).astype(np.float32)
    area = abs(cv2.contourArea(poly))
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    inter, pts = cv2.intersectConvexConvex(poly, frame)
    if area <= 0 or inter <= 0 or pts is None:
        return 0.0, None
    pts = pts.reshape(-1, 2).astype(np.float64)
    lo = np.clip(pts.min(axis=0), 0, [w, h])
    hi = np.clip(pts.max(axis=0), 0, [w, h])
    return min(1.0, float(inter / area)), [round(float(v), 3) for v in (*lo, *hi)]


def _iou_and_cover(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """IoU of two [x0, y0, x1, y1] boxes, and their intersection over the smaller one's area."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    area_a, area_b = (a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1])
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0, inter / max(min(area_a, area_b), 1e-9)


# ---------------------------------------------------------------------------- placing signs


@dataclass(frozen=True)
class _Sign:
    """One planned sign: what, where, its exact box, and how it is drawn."""

    name: str
    quad: np.ndarray
    box: list[float]
    scale: float
    pole: bool
    gain: float
    occluded: bool


def _place(rng: np.random.Generator, w: int, h: int, vp, scale: float, cut: bool) -> np.ndarray:
    """Corners of a sign ``scale`` x frame height, at the roadside anywhere across the frame."""
    size = scale * h
    cx = rng.uniform(0, w)
    side = 1.0 if cx >= vp[0] else -1.0
    cy = vp[1] - rng.uniform(-0.15, 0.6) * size
    local = sign_quad((0.0, 0.0), size, rng.uniform(-8, 8), side * rng.uniform(-0.2, 0.7))
    lo, hi = local.min(axis=0), local.max(axis=0)
    # Fully inside the frame, or cut by one border (never the bottom: signs stand above it).
    cx = float(np.clip(cx, -lo[0], max(-lo[0], w - hi[0])))
    cy = float(np.clip(cy, -lo[1], max(-lo[1], h - hi[1])))
    if cut:
        out = rng.uniform(0.05, _MAX_CUT)
        border = int(rng.choice(3, p=[0.4, 0.4, 0.2]))
        if border == 0:
            cx = -lo[0] - out * (hi[0] - lo[0])
        elif border == 1:
            cx = w - hi[0] + out * (hi[0] - lo[0])
        else:
            cy = -lo[1] - out * (hi[1] - lo[1])
    return (local + np.array([cx, cy], np.float32)).astype(np.float32)


def _fits(name: str, quad: np.ndarray, w: int, h: int, boxes: list[list[float]]):
    """The sign's box when it is visible enough and clear of the earlier ``boxes``, else None."""
    visible, box = sign_box(name, quad, w, h)
    if box is None or visible < MIN_VISIBLE_AREA:
        return None
    if box[2] - box[0] < MIN_BOX_PX or box[3] - box[1] < MIN_BOX_PX:
        return None
    for other in boxes:
        iou, cover = _iou_and_cover(box, other)
        if iou > _MAX_IOU or cover > _MAX_COVER:
            return None
    return box


def _plan_signs(rng: np.random.Generator, w: int, h: int, vp, names: Sequence[str]) -> list[_Sign]:
    """0..`MAX_SIGNS` signs for one scene, far ones first (the drawing order)."""
    count = 0 if rng.uniform() < _P_EMPTY else int(rng.integers(1, MAX_SIGNS + 1))
    lo = math.log(max(MIN_SCALE, _MIN_PX / h))
    hi = math.log(max(MAX_SCALE, _MIN_PX / h))
    signs: list[_Sign] = []
    for _ in range(count):
        name = names[int(rng.integers(len(names)))]
        scale = math.exp(rng.uniform(lo, hi))
        cut = bool(rng.uniform() < _P_CUT)
        style = dict(
            pole=bool(rng.uniform() < 0.8),
            gain=float(rng.uniform(0.7, 1.15)),
            occluded=bool(rng.uniform() < _P_OCCLUDED),
        )
        for _ in range(_TRIES):
            quad = _place(rng, w, h, vp, scale, cut)
            box = _fits(name, quad, w, h, [s.box for s in signs])
            if box is not None:
                signs.append(_Sign(name, quad, box, scale, **style))
                break
    return sorted(signs, key=lambda s: s.scale)


def _draw_signs(img: np.ndarray, signs: Sequence[_Sign], rng: np.random.Generator, vp) -> None:
    h = img.shape[0]
    for sign in signs:  # far first: a near sign (and its pole) hides a far one, never the reverse
        if sign.pole:
            draw_pole(img, sign.quad, ground_y(vp, sign.scale * h))
        draw_sign(img, sign.name, sign.quad, gain=sign.gain)
        if sign.occluded:
            _occlude(img, sign.quad, rng)


# ---------------------------------------------------------------------------- scenes


def resolve_detection_classes(classes: Iterable[str] | None) -> list[str]:
    """Validate a class selection (commas allowed inside items); None means all 12 signs."""
    if classes is None:
        return list(DETECTION_CLASSES)
    names = _split_names(classes)
    unknown = [c for c in names if c not in DETECTION_CLASSES]
    hint = f"use some of: {', '.join(DETECTION_CLASSES)}"
    if unknown:
        extra = " (a detector has no background class)" if "background" in unknown else ""
        raise DataError(f"unknown class(es) {', '.join(map(repr, unknown))}{extra}", hint)
    if not names:
        raise DataError("no classes were selected", hint)
    return list(dict.fromkeys(names))


def _scene(
    index: int, seed: int, w: int, h: int, names: Sequence[str]
) -> tuple[np.ndarray, list[_Sign]]:
    rng = _rng(seed, _NAME, index)
    vp = _vanishing_point(rng, w, h)
    img = _background(rng, w, h, vp)
    signs = _plan_signs(rng, w, h, vp, names)
    _draw_signs(img, signs, rng, vp)
    return camera_effects(img, rng), signs


def render_scene(
    index: int,
    seed: int = 0,
    size: tuple[int, int] | str = (320, 240),
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Scene ``index`` as BGR uint8 (before JPEG) and its objects, the same for the same args.

    Objects are ``[{"label": name, "box": [x0, y0, x1, y1]}]`` (floats, pixel-edge coordinates),
    far signs first.
    """
    w, h = parse_size(size)
    img, signs = _scene(index, seed, w, h, resolve_detection_classes(classes))
    return img, [{"label": s.name, "box": list(s.box)} for s in signs]


# ---------------------------------------------------------------------------- the dataset


def _coco(
    entries: list[tuple[str, list[dict[str, Any]]]], w: int, h: int, names: list[str], seed: int
) -> dict[str, Any]:
    category = {name: i + 1 for i, name in enumerate(names)}
    images, annotations = [], []
    for image_id, (file_name, objects) in enumerate(entries, start=1):
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for obj in objects:
            x0, y0, x1, y1 = obj["box"]
            bw, bh = round(x1 - x0, 3), round(y1 - y0, 3)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category[obj["label"]],
                    "bbox": [x0, y0, bw, bh],
                    "area": round(bw * bh, 3),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": "edgevision synthetic road signs (detection)",
            "version": "1.0",
            "contributor": GENERATOR,
            "seed": int(seed),
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n, "supercategory": "sign"} for n, i in category.items()],
    }


def generate_detection_dataset(
    out: str | os.PathLike[str],
    images: int = 600,
    seed: int = 0,
    size: tuple[int, int] | str = (320, 240),
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write the detection dataset (``images/``, ``annotations.json``) atomically; returns ``out``.

    ``size`` is ``(width, height)`` or ``"320x240"``; ``classes`` defaults to all 12 signs.
    A previous synthetic dataset at ``out`` is replaced; any other non-empty folder is refused.
    """
    _check_count(images, "image count", "pass e.g. --images 600")
    w, h = parse_size(size)
    names = resolve_detection_classes(classes)
    out = Path(out)
    _check_out(out)
    digits = max(6, len(str(images - 1)))
    entries = []
    meta = _scene_meta(GENERATOR, "detection", seed, images, (w, h), names)
    with _writing(out, meta, images, "synth scenes", progress) as (tmp, advance):
        (tmp / IMAGES_DIR).mkdir()
        for i in range(images):
            img, signs = _scene(i, seed, w, h, names)
            file_name = f"{i:0{digits}d}.jpg"
            (tmp / IMAGES_DIR / file_name).write_bytes(_jpeg(img, seed, _NAME, i))
            entries.append((file_name, [{"label": s.name, "box": s.box} for s in signs]))
            advance()
        atomic_write_json(tmp / ANNOTATIONS_FILE, _coco(entries, w, h, names, seed))
    return out


def read_annotations(dataset_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The COCO annotations of a detection dataset (``annotations.json``)."""
    path = Path(dataset_dir) / ANNOTATIONS_FILE
    fix = "generate it with `edgevision data synth --task detection`"
    data = read_json(path, "annotations", DataError, fix)
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(f"{path} is not COCO: it needs images, annotations, categories lists", fix)
    return data


def _color(category_id: int) -> tuple[int, int, int]:
    hue = (category_id * 47) % 180
    bgr = cv2.cvtColor(np.array([[[hue, 230, 255]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr)


def _draw_boxes(img: np.ndarray, anns: list[dict], names: dict[int, str], k: float) -> None:
    for ann in anns:
        x, y, bw, bh = (v * k for v in ann["bbox"])
        color = _color(ann["category_id"])
        p0, p1 = (round(x), round(y)), (round(x + bw) - 1, round(y + bh) - 1)
        cv2.rectangle(img, p0, p1, color, 1, cv2.LINE_AA)
        text = names.get(ann["category_id"], "?").replace("speed_limit_", "")
        ty = p0[1] - 3 if p0[1] > 12 else p1[1] + 11
        cv2.putText(img, text, (p0[0], ty), cv2.FONT_HERSHEY_SIMPLEX, 0.35, color, 1, cv2.LINE_AA)


def detection_contact_sheet(
    dataset_dir: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    count: int = 16,
    columns: int = 4,
    cell_width: int = 320,
) -> Path:
    """Write a PNG grid of the first ``count`` images with their boxes and labels drawn."""
    root = Path(dataset_dir)
    coco = read_annotations(root)
    names = {c["id"]: c["name"] for c in coco["categories"]}
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    entries = coco["images"][: max(1, count)]
    if not entries:
        raise DataError(f"{root / ANNOTATIONS_FILE} lists no images", "generate the dataset")
    first = entries[0]
    k = cell_width / first["width"]
    cell_h = round(first["height"] * k)
    cells = []
    for entry in entries:
        img = read_image(root / IMAGES_DIR / entry["file_name"])
        img = cv2.resize(img, (cell_width, cell_h), interpolation=cv2.INTER_AREA)
        _draw_boxes(img, by_image.get(entry["id"], []), names, k)
        cells.append(img)
    return atomic_write_bytes(out_png, _png(_grid(cells, columns)))
