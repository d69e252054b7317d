"""A seeded synthetic road-sign dataset, written as an ImageFolder tree ``OUT/<class>/0000.jpg``.

Each image is a small road-ish scene holding one sign at 30–90 % of the image height (a dash-cam
frame with that sign close), varied in scale, position, rotation, perspective, background,
lighting, blur, occlusion and JPEG quality. The ``background`` class holds the same scenes with no
sign, or only a far-away one, so a whole-frame classifier can say "no sign".

Every image has its own random generator seeded from ``(seed, class, index)``: the bytes of an
image do not depend on which other classes or how many images were generated. Real-photo
backgrounds come from scikit-learn's sample images when scikit-learn is installed (the
``[train]`` extra); without it those draws fall back to procedural backgrounds, so the bytes
for a seed are the same on every machine with the same libraries, not across installs.

The private helpers here (seeded streams, vanishing point, backgrounds and the car ahead, the
seeded JPEG quality, PNG encoding, the contact-sheet grid, count and output checks, and
`_writing`: progress plus the atomic dataset folder with ``synth.json``) serve the detection
and segmentation generators too.
"""

from __future__ import annotations

import functools
import json
import math
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.data.images import read_image
from edgevision.data.render import (
    BACKGROUND,
    MAX_SIGN_SCALE,
    MIN_SIGN_SCALE,
    SIGN_CLASSES,
    TINY_SIGN_SCALE,
    SceneStyle,
    camera_effects,
    draw_pole,
    draw_road,
    draw_sign,
    ground_y,
    parse_size,
    progress_bar,
    sign_quad,
)
from edgevision.errors import DataError
from edgevision.fileio import atomic_dir, atomic_write_bytes, atomic_write_json
from edgevision.opencv import cv2

CLASSES: list[str] = [*SIGN_CLASSES, BACKGROUND]
META_FILE = "synth.json"
_JPEG_QUALITY = (30, 95)


def _rng(seed: int, name: str, index: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process.
    return np.random.default_rng([int(seed), zlib.crc32(name.encode()), int(index)])


def _vanishing_point(rng: np.random.Generator, w: int, h: int) -> tuple[float, float]:
    """Where a scene's road meets the horizon: the first draws of every scene's generator."""
    return (w * rng.uniform(0.3, 0.7), h * rng.uniform(0.35, 0.55))


# ---------------------------------------------------------------------------- backgrounds


@functools.lru_cache(maxsize=1)
def _photos() -> tuple[np.ndarray, ...]:
    """scikit-learn's two sample photos as BGR, or none when scikit-learn is not installed."""
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return ()
    return tuple(cv2.cvtColor(im, cv2.COLOR_RGB2BGR) for im in load_sample_images().images)


def _photo(rng: np.random.Generator, w: int, h: int, vp) -> np.ndarray:
    photos = _photos()
    if not photos:
        return _road(rng, w, h, vp)
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    ch = min(sh, rng.uniform(0.25, 1.0) * sh, sw * h / w)
    cw = ch * w / h
    x0, y0 = rng.uniform(0, sw - cw), rng.uniform(0, sh - ch)
    crop = src[int(y0) : int(y0 + ch), int(x0) : int(x0 + cw)]
    img = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
    return img[:, ::-1].copy() if rng.uniform() < 0.5 else img


def _clutter(rng: np.random.Generator, w: int, h: int, vp) -> np.ndarray:
    """A two-colour gradient with noise and random shapes: nothing like a road."""
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xx * math.cos(ang) + yy * math.sin(ang)) / (w + h) + 0.5
    img = (a * (1 - t[..., None]) + b * t[..., None]).astype(np.float32)
    img += rng.normal(0, rng.uniform(0, 12), img.shape).astype(np.float32)
    img = np.clip(img, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(0, 7))):
        color = tuple(float(c) for c in rng.uniform(0, 255, 3))
        p = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        r = int(rng.integers(3, max(4, h // 3)))
        if rng.uniform() < 0.5:
            cv2.rectangle(img, p, (p[0] + r, p[1] + int(rng.integers(3, h // 2))), color, -1)
        else:
            cv2.ellipse(
                img,
                p,
                (r, int(rng.integers(2, r + 2))),
                rng.uniform(0, 180),
                0,
                360,
                color,
                -1,
                cv2.LINE_AA,
            )
    return img


def _car(rng: np.random.Generator, w: int, vp) -> Callable[[np.ndarray], None]:
    """A car ahead on the road, as a box with tail lights: its draws from ``rng`` are made now,
    the returned function paints it onto a picture."""
    z = rng.uniform(6, 40)
    f = 0.8 * w
    cw, ch = f * 1.8 / z, f * 1.4 / z
    cx, base = vp[0] + f * rng.uniform(-0.5, 0.5) / z, vp[1] + f * 1.3 / z
    color = tuple(float(c) for c in rng.uniform(20, 200, 3))
    p0, p1 = (round(cx - cw / 2), round(base - ch)), (round(cx + cw / 2), round(base))

    def draw(img: np.ndarray) -> None:
        cv2.rectangle(img, p0, p1, color, -1, cv2.LINE_AA)
        for x in (p0[0] + cw * 0.12, p1[0] - cw * 0.12):
            center = (round(x), round(base - ch * 0.45))
            cv2.circle(img, center, max(1, round(cw * 0.07)), (20, 20, 220), -1)

    return draw


def _road(rng: np.random.Generator, w: int, h: int, vp) -> np.ndarray:
    img = draw_road(SceneStyle.sample(rng), w, h, rng.uniform(0, 1000), vp)
    if rng.uniform() < 0.35:
        _car(rng, w, vp)(img)
    return img


# Background kinds and their odds, the same for every class (a kind must never give a class away).
_BACKGROUNDS: tuple[tuple[Callable[..., np.ndarray], float], ...] = (
    (_road, 0.6),
    (_photo, 0.2),
    (_clutter, 0.2),
)


def _background(rng: np.random.Generator, w: int, h: int, vp) -> np.ndarray:
    """One of `_BACKGROUNDS`, drawn by its odds."""
    kinds, odds = zip(*_BACKGROUNDS, strict=True)
    return kinds[int(rng.choice(len(kinds), p=odds))](rng, w, h, vp)


# ---------------------------------------------------------------------------- signs


def _place(
    rng: np.random.Generator, w: int, h: int, vp, scale: float, max_cut: float
) -> np.ndarray:
    """Corners of a sign ``scale`` x frame height, roadside-placed as in the dash-cam clip."""
    size = scale * h
    side = 1.0 if rng.uniform() < 0.7 else -1.0
    cx = vp[0] + side * rng.uniform(0.0, 1.1) * size
    cy = vp[1] - rng.uniform(-0.15, 0.45) * size
    # Keep at least (1 - max_cut) of the sign's width and height inside the frame.
    margin = size * (0.5 - (rng.uniform(0, max_cut) if rng.uniform() < 0.3 else 0.0))
    cx = float(np.clip(cx, margin, max(margin, w - margin)))
    cy = float(np.clip(cy, margin, max(margin, h - margin)))
    yaw = side * rng.uniform(-0.2, 0.7)
    return sign_quad((cx, cy), size, rng.uniform(-8, 8), yaw)


def _occlude(img: np.ndarray, quad: np.ndarray, rng: np.random.Generator) -> None:
    """Cover part of the sign's edge with foliage or a dark bar."""
    c = quad.mean(axis=0)
    size = float(np.linalg.norm(quad[2] - quad[1]))
    ang = rng.uniform(0, 2 * math.pi)
    p = c + 0.55 * size * np.array([math.cos(ang), math.sin(ang)])
    if rng.uniform() < 0.6:
        color = tuple(float(v) for v in rng.uniform([20, 70, 20], [70, 150, 80]))
        for _ in range(3):
            q = p + rng.normal(0, 0.08 * size, 2)
            r = max(1, round(rng.uniform(0.12, 0.22) * size))
            cv2.circle(img, np.round(q).astype(int), r, color, -1, cv2.LINE_AA)
    else:
        color = tuple(float(v) for v in rng.uniform(20, 90, 3))
        half = rng.uniform(0.06, 0.14) * size
        d = np.array([-math.sin(ang), math.cos(ang)]) * size
        pts = np.array([p - d - half, p + d - half, p + d + half, p - d + half])
        cv2.fillConvexPoly(img, np.round(pts).astype(np.int32), color, cv2.LINE_AA)


def _add_sign(
    img: np.ndarray, rng: np.random.Generator, name: str, vp, scale: float, max_cut: float
) -> np.ndarray:
    h, w = img.shape[:2]
    quad = _place(rng, w, h, vp, scale, max_cut)
    if rng.uniform() < 0.8:
        draw_pole(img, quad, ground_y(vp, scale * h))
    draw_sign(img, name, quad, gain=rng.uniform(0.7, 1.15))
    return quad


def render_sample(
    name: str, index: int, seed: int = 0, size: tuple[int, int] = (160, 120)
) -> np.ndarray:
    """Image ``index`` of class ``name`` as BGR uint8 (before JPEG), the same for the same args."""
    if name not in CLASSES:
        raise DataError(f"unknown class {name!r}", f"use some of: {', '.join(CLASSES)}")
    w, h = parse_size(size)
    rng = _rng(seed, name, index)
    vp = _vanishing_point(rng, w, h)
    img = _background(rng, w, h, vp)
    if name != BACKGROUND:
        scale = math.exp(rng.uniform(math.log(MIN_SIGN_SCALE), math.log(MAX_SIGN_SCALE)))
        quad = _add_sign(img, rng, name, vp, scale, max_cut=0.2)
        if rng.uniform() < 0.2:
            _occlude(img, quad, rng)
    elif rng.uniform() < 0.4:  # only a far-away sign: still "no sign" for the classifier
        far = SIGN_CLASSES[int(rng.integers(len(SIGN_CLASSES)))]
        _add_sign(img, rng, far, vp, rng.uniform(*TINY_SIGN_SCALE), max_cut=0.0)
    return camera_effects(img, rng)


def encode_sample(
    name: str, index: int, seed: int = 0, size: tuple[int, int] = (160, 120)
) -> bytes:
    """`render_sample` as JPEG bytes at a seeded quality in 30–95."""
    return _jpeg(render_sample(name, index, seed, size), seed, name, index)


def _jpeg(img: np.ndarray, seed: int, name: str, index: int) -> bytes:
    """``img`` as JPEG bytes at a quality in `_JPEG_QUALITY` seeded from ``(seed, name, index)``."""
    # A separate stream so the quality does not shift the picture's own draws.
    quality = int(
        _rng(seed, name + "#jpeg", index).integers(_JPEG_QUALITY[0], _JPEG_QUALITY[1] + 1)
    )
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover - OpenCV always has a JPEG encoder
        raise RuntimeError("OpenCV could not encode a JPEG")
    return buf.tobytes()


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - OpenCV always has a PNG encoder
        raise RuntimeError("OpenCV could not encode a PNG")
    return buf.tobytes()


def _grid(cells: Sequence[np.ndarray], columns: int, pad: int = 2) -> np.ndarray:
    """Equal-sized ``cells`` in rows of ``columns`` on white, ``pad`` pixels apart."""
    (ch, cw), cols = cells[0].shape[:2], min(columns, len(cells))
    rows = math.ceil(len(cells) / cols)
    sheet = np.full((rows * (ch + pad) + pad, cols * (cw + pad) + pad, 3), 255, np.uint8)
    for n, cell in enumerate(cells):
        y, x = pad + (n // cols) * (ch + pad), pad + (n % cols) * (cw + pad)
        sheet[y : y + ch, x : x + cw] = cell
    return sheet


# ---------------------------------------------------------------------------- the dataset


def _split_names(classes: Iterable[str]) -> list[str]:
    """The names of a class selection: one string or several, commas allowed inside items."""
    if isinstance(classes, str):
        classes = [classes]
    return [c.strip() for item in classes for c in str(item).split(",") if c.strip()]


def resolve_classes(classes: Iterable[str] | None) -> list[str]:
    """Validate a class selection (commas allowed inside items); None means all of `CLASSES`."""
    if classes is None:
        return list(CLASSES)
    names = _split_names(classes)
    unknown = [c for c in names if c not in CLASSES]
    if unknown:
        raise DataError(
            f"unknown class(es) {', '.join(map(repr, unknown))}",
            f"use some of: {', '.join(CLASSES)}",
        )
    if not names:
        raise DataError("no classes were selected", f"use some of: {', '.join(CLASSES)}")
    return list(dict.fromkeys(names))


def _check_out(out: Path) -> None:
    # atomic_dir replaces the whole folder: never let that swallow an unrelated one.
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a folder", "choose another path")
    if out.is_dir() and any(out.iterdir()) and not (out / META_FILE).is_file():
        raise DataError(
            f"output folder {out} is not empty and was not made by `edgevision data synth`",
            "choose a new or empty folder",
        )


def _check_count(count: int, what: str, fix: str) -> None:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise DataError(f"{what} {count!r} must be a whole number >= 1", fix)


def _scene_meta(
    generator: str, task: str, seed: int, images: int, size: tuple[int, int], classes: list[str]
) -> dict[str, Any]:
    """``synth.json`` of a dataset of scenes (detection, segmentation)."""
    w, h = size
    return {
        "generator": generator,
        "task": task,
        "seed": int(seed),
        "images": images,
        "size": [w, h],
        "classes": classes,
    }


@contextmanager
def _writing(
    out: Path, meta: dict[str, Any], total: int, description: str, progress: bool
) -> Iterator[tuple[Path, Callable[..., None]]]:
    """The temp folder that replaces ``out`` on success, and a progress bar's ``advance`` over
    ``total`` items; ``meta`` is written last, as ``synth.json`` (what `_check_out` looks for)."""
    with progress_bar(total, description, progress) as advance, atomic_dir(out) as tmp:
        yield tmp, advance
        atomic_write_json(tmp / META_FILE, meta)


def generate_dataset(
    out: str | os.PathLike[str],
    per_class: int = 100,
    seed: int = 0,
    size: tuple[int, int] | str = (160, 120),
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write the synthetic dataset ``out/<class>/<index>.jpg`` atomically; returns ``out``.

    ``size`` is ``(width, height)`` or ``"160x120"``; ``classes`` defaults to all of `CLASSES`.
    A previous synthetic dataset at ``out`` is replaced; any other non-empty folder is refused.
    """
    _check_count(per_class, "per-class count", "pass e.g. --per-class 100")
    w, h = parse_size(size)
    names = resolve_classes(classes)
    out = Path(out)
    _check_out(out)
    digits = max(4, len(str(per_class - 1)))
    meta = {
        "generator": "edgevision.data.synth",
        "seed": int(seed),
        "per_class": per_class,
        "size": [w, h],
        "classes": names,
    }
    with _writing(out, meta, len(names) * per_class, "synth signs", progress) as (tmp, advance):
        for name in names:
            (tmp / name).mkdir()
            for i in range(per_class):
                (tmp / name / f"{i:0{digits}d}.jpg").write_bytes(
                    encode_sample(name, i, seed, (w, h))
                )
                advance()
    return out


def contact_sheet(
    dataset_dir: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    per_class: int = 8,
    cell_height: int = 96,
) -> Path:
    """Write a PNG grid: one row per class folder, its first ``per_class`` images."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"dataset folder {root} does not exist", "generate it first")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    rows = []
    for folder in folders:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
        if files:
            rows.append((folder.name, [read_image(p) for p in files[:per_class]]))
    if not rows:
        raise DataError(f"no class folders with images under {root}", "generate the dataset")
    first = rows[0][1][0]
    cell_w = round(first.shape[1] * cell_height / first.shape[0])
    label_w, pad = 150, 2
    sheet = np.full(
        (len(rows) * (cell_height + pad) + pad, label_w + per_class * (cell_w + pad) + pad, 3),
        255,
        np.uint8,
    )
    for r, (name, images) in enumerate(rows):
        y = pad + r * (cell_height + pad)
        cv2.putText(
            sheet,
            name,
            (4, y + cell_height // 2 + 5),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
        for c, img in enumerate(images):
            x = label_w + pad + c * (cell_w + pad)
            sheet[y : y + cell_height, x : x + cell_w] = cv2.resize(
                img, (cell_w, cell_height), interpolation=cv2.INTER_AREA
            )
    return atomic_write_bytes(out_png, _png(sheet))


def read_meta(dataset_dir: str | os.PathLike[str]) -> dict:
    """The parameters a synthetic dataset was generated with (``synth.json``)."""
    path = Path(dataset_dir) / META_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path} does not exist", "generate with `edgevision data synth`") from None
