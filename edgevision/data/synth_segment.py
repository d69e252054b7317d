"""A seeded synthetic road-scene segmentation dataset and dash-cam clip, with exact per-pixel masks.

Layout::

    OUT/images/000000.jpg ...   the scenes (JPEG, seeded quality 30-95)
    OUT/masks/000000.png ...    one uint8 class id per pixel (single-channel PNG)
    OUT/classes.txt             line i names class id i
    OUT/synth.json              the parameters (generator, task, seed, images, size, classes)

The scenes are the other tasks' road scenes (`edgevision.data.render`: the same road, verges,
skyline, lane markings and roadside objects as `draw_road`, a car ahead in about a third of
them, 0-5 signs placed as in the detection dataset, some occluded, then the same camera
effects). The classes (`SEGMENTATION_CLASSES`) are ``background``, ``road`` (the drivable
area), ``lane_marking`` (edge lines and centre dashes, wide near and thin far in perspective)
and ``sign`` (the sign faces; poles, occluders, the car and roadside objects are background).

Masks are exact: every layer of the picture (the road polygon, the markings, each object, pole,
sign and occluder) is drawn with the same calls onto the picture and, alone, onto a black and a
white canvas, which gives its anti-aliased coverage of every pixel; a pixel takes the class of
the last layer covering at least half of it (painter's order, as the picture). Camera effects
blur and recolour the picture but move nothing.

A smaller class list (``classes``) keeps the same pictures; a thing whose class is left out takes
its fallback's id (a lane marking is road, road and signs are background); background is always
class 0.

`write_segmentation_clip` writes the dash-cam clip of `edgevision.data.video.DashCam` (the same
frames, byte for byte, as `write_video` for the same seed, size and fps) with one mask per frame.

Every image has its own random generator seeded from ``(seed, index)``: its bytes do not depend on
how many images were generated. numpy + OpenCV only.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgevision.data.images import read_image
from edgevision.data.render import (
    SIGN_CLASSES,
    SceneStyle,
    _draw_marks,
    _draw_roadside,
    _road_layout,
    _sky_and_ground,
    camera_effects,
    draw_pole,
    draw_sign,
    ground_y,
    parse_size,
    progress_bar,
    visible_box,
)
from edgevision.data.segmentation import (
    CLASSES_FILE,
    IGNORE_INDEX,
    IMAGES_DIR,
    MASKS_DIR,
    read_mask,
)
from edgevision.data.synth import (
    _car,
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
from edgevision.data.synth_detect import _plan_signs
from edgevision.data.video import _SPEED_MS, FOURCC, DashCam, _writing_clip
from edgevision.errors import DataError
from edgevision.fileio import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_output_file,
    read_json,
)
from edgevision.opencv import cv2

SEGMENTATION_CLASSES: list[str] = ["background", "road", "lane_marking", "sign"]
GENERATOR = "edgevision.data.synth_segment"
# What a drawn thing becomes when its own class is not selected.
FALLBACK = {"lane_marking": "road", "road": "background", "sign": "background"}

_NAME = "segmentation"  # the key of the per-image random streams
_P_CAR = 0.35
_MASK_NAME = re.compile(r"^\d{6,}\.png$")

Draw = Callable[[np.ndarray], Any]


def resolve_segmentation_classes(classes: Iterable[str] | None) -> list[str]:
    """Validate a class selection (commas allowed inside items); None means all 4 classes.

    The result is in `SEGMENTATION_CLASSES` order with ``background`` first (added when left
    out): class ids do not depend on the order the names were given in.
    """
    if classes is None:
        return list(SEGMENTATION_CLASSES)
    names = _split_names(classes)
    hint = f"use some of: {', '.join(SEGMENTATION_CLASSES)}"
    unknown = [c for c in names if c not in SEGMENTATION_CLASSES]
    if unknown:
        raise DataError(f"unknown class(es) {', '.join(map(repr, unknown))}", hint)
    if not set(names) - {"background"}:
        raise DataError(
            "no class besides background was selected (a segmenter needs at least 2)", hint
        )
    return [c for c in SEGMENTATION_CLASSES if c in names or c == "background"]


def _ids(names: Sequence[str]) -> dict[str, int]:
    """The class id of every kind of drawn thing under the selection ``names``."""
    index = {name: i for i, name in enumerate(names)}
    ids = {}
    for kind in SEGMENTATION_CLASSES:
        name = kind
        while name not in index:
            name = FALLBACK[name]
        ids[kind] = index[name]
    return ids


# ---------------------------------------------------------------------------- exact masks


def _covered(draw: Draw, shape: tuple[int, ...]) -> np.ndarray:
    """Pixels at least half covered by what ``draw`` paints, whatever its colours.

    Drawn onto black and onto white: an opaque (anti-aliased) layer of coverage ``a`` gives
    ``light - dark = 255 * (1 - a)`` in every channel.
    """
    dark, light = np.zeros(shape, np.uint8), np.full(shape, 255, np.uint8)
    draw(dark)
    draw(light)
    diff = light.astype(np.int16) - dark.astype(np.int16)
    return diff.mean(axis=2) <= 127.5


class _Painter:
    """Draws layers onto a picture and keeps, per pixel, the class of the topmost layer that
    covers at least half of it."""

    def __init__(self, img: np.ndarray, ids: dict[str, int]) -> None:
        self.img = img
        self.ids = ids
        self.mask = np.full(img.shape[:2], ids["background"], np.uint8)

    def layer(
        self,
        kind: str,
        draw: Callable[..., Any],
        rng: np.random.Generator | None = None,
        cover: Draw | None = None,
    ) -> None:
        """Draw ``draw(canvas)`` (or ``draw(canvas, rng)``, replayed from the same state for
        the mask) as a layer of class ``kind``; ``cover`` draws the same shape for the mask
        when ``draw``'s colours could clip (a sign's gain)."""
        if rng is not None:
            state = copy.deepcopy(rng)
            self.mask[_covered(lambda c: draw(c, copy.deepcopy(state)), self.img.shape)] = self.ids[
                kind
            ]
            draw(self.img, rng)
            return
        self.mask[_covered(cover or draw, self.img.shape)] = self.ids[kind]
        draw(self.img)


def _paint_road(
    p: _Painter, style: SceneStyle, w: int, h: int, distance: float, vp: tuple[float, float]
) -> None:
    """`draw_road`'s road, markings and roadside objects (same calls, same order, so the same
    pixels) onto a picture that holds `_sky_and_ground`, as layers of ``p``."""
    f, road, marks, objects = _road_layout(style, w, distance, vp)
    p.layer("road", lambda c: cv2.fillPoly(c, [road], style.road, cv2.LINE_AA, shift=4))
    p.layer("lane_marking", lambda c: _draw_marks(c, marks))
    p.layer("background", lambda c: _draw_roadside(c, vp, f, objects))


def _paint_sign(
    p: _Painter, name: str, quad: np.ndarray, gain: float, pole_to: float | None
) -> None:
    if pole_to is not None:
        p.layer("background", lambda c: draw_pole(c, quad, pole_to))
    p.layer(
        "sign",
        lambda c: draw_sign(c, name, quad, gain=gain),
        cover=lambda c: draw_sign(c, name, quad),  # gain > 1 would clip on white
    )


def _scene(
    index: int, seed: int, w: int, h: int, ids: dict[str, int]
) -> tuple[np.ndarray, np.ndarray]:
    rng = _rng(seed, _NAME, index)
    vp = _vanishing_point(rng, w, h)
    style = SceneStyle.sample(rng)
    p = _Painter(_sky_and_ground(style, w, h, vp[1]), ids)
    _paint_road(p, style, w, h, rng.uniform(0, 1000), vp)
    if rng.uniform() < _P_CAR:  # a car ahead, as the classification scenes have: background
        p.layer("background", _car(rng, w, vp))
    for sign in _plan_signs(rng, w, h, vp, SIGN_CLASSES):  # far first
        pole_to = ground_y(vp, sign.scale * h) if sign.pole else None
        _paint_sign(p, sign.name, sign.quad, sign.gain, pole_to)
        if sign.occluded:
            p.layer("background", lambda c, r, q=sign.quad: _occlude(c, q, r), rng=rng)
    return camera_effects(p.img, rng), p.mask


def render_segmentation_scene(
    index: int,
    seed: int = 0,
    size: tuple[int, int] | str = (320, 240),
    classes: Sequence[str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scene ``index`` as BGR uint8 (before JPEG) and its ``(H, W)`` uint8 class-id mask, the
    same for the same arguments (``classes`` changes the mask's ids, never the picture)."""
    w, h = parse_size(size)
    return _scene(index, seed, w, h, _ids(resolve_segmentation_classes(classes)))


# ---------------------------------------------------------------------------- the dataset


def generate_segmentation_dataset(
    out: str | os.PathLike[str],
    count: int = 600,
    seed: int = 0,
    size: tuple[int, int] | str = (320, 240),
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """Write the segmentation dataset (``images/``, ``masks/``, ``classes.txt``) atomically.

    ``size`` is ``(width, height)`` or ``"320x240"``; ``classes`` defaults to
    `SEGMENTATION_CLASSES`. A previous synthetic dataset at ``out`` is replaced; any other
    non-empty folder is refused. Returns ``out`` and a summary: ``images``, ``classes``,
    ``pixels_per_class`` and ``images_per_class`` (by class name).
    """
    _check_count(count, "image count", "pass e.g. --images 600")
    w, h = parse_size(size)
    names = resolve_segmentation_classes(classes)
    ids = _ids(names)
    out = Path(out)
    _check_out(out)
    digits = max(6, len(str(count - 1)))
    pixels = np.zeros(len(names), np.int64)
    images = np.zeros(len(names), np.int64)
    meta = _scene_meta(GENERATOR, "segmentation", seed, count, (w, h), names)
    with _writing(out, meta, count, "synth scenes", progress) as (tmp, advance):
        (tmp / IMAGES_DIR).mkdir()
        (tmp / MASKS_DIR).mkdir()
        for i in range(count):
            img, mask = _scene(i, seed, w, h, ids)
            stem = f"{i:0{digits}d}"
            (tmp / IMAGES_DIR / f"{stem}.jpg").write_bytes(_jpeg(img, seed, _NAME, i))
            (tmp / MASKS_DIR / f"{stem}.png").write_bytes(_png(mask))
            per = np.bincount(mask.ravel(), minlength=len(names))[: len(names)]
            pixels += per
            images += per > 0
            advance()
        atomic_write_text(tmp / CLASSES_FILE, "".join(f"{n}\n" for n in names))
    summary = {
        "images": count,
        "classes": names,
        "pixels_per_class": {n: int(v) for n, v in zip(names, pixels, strict=True)},
        "images_per_class": {n: int(v) for n, v in zip(names, images, strict=True)},
    }
    return out, summary


_PALETTE = {
    "background": (40, 40, 40),
    "road": (128, 64, 128),
    "lane_marking": (0, 220, 255),
    "sign": (40, 40, 230),
}


def colorize(mask: np.ndarray, labels: Sequence[str]) -> np.ndarray:
    """A BGR picture of a class-id mask (fixed colours for the synthetic classes, 255 white)."""
    lut = np.full((256, 3), 255, np.uint8)
    for i, name in enumerate(labels):
        hue = (i * 47) % 180
        other = cv2.cvtColor(np.array([[[hue, 200, 230]]], np.uint8), cv2.COLOR_HSV2BGR)[0, 0]
        lut[i] = _PALETTE.get(name, tuple(int(v) for v in other))
    return lut[mask]


def segmentation_contact_sheet(
    dataset_dir: str | os.PathLike[str],
    out_png: str | os.PathLike[str],
    count: int = 8,
    columns: int = 2,
    cell_width: int = 160,
) -> Path:
    """Write a PNG grid of the first ``count`` images, each beside its coloured mask."""
    root = Path(dataset_dir)
    classes = root / CLASSES_FILE
    if not classes.is_file():
        raise DataError(f"{classes} does not exist", "generate the dataset first")
    labels = [line.strip() for line in classes.read_text(encoding="utf-8").splitlines()]
    files = sorted((root / IMAGES_DIR).glob("*.jpg"))[: max(1, count)]
    if not files:
        raise DataError(f"{root / IMAGES_DIR} holds no images", "generate the dataset first")
    pairs = []
    for path in files:
        img, mask = read_image(path), read_mask(root / MASKS_DIR / f"{path.stem}.png")
        cell_h = round(img.shape[0] * cell_width / img.shape[1])
        img = cv2.resize(img, (cell_width, cell_h), interpolation=cv2.INTER_AREA)
        mask = cv2.resize(mask, (cell_width, cell_h), interpolation=cv2.INTER_NEAREST)
        pairs.append(np.hstack([img, colorize(mask, labels)]))
    return atomic_write_bytes(out_png, _png(_grid(pairs, columns)))


# ---------------------------------------------------------------------------- the clip


def _clip_frame(cam: DashCam, i: int, ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``i`` of ``cam`` (the same pixels as ``cam.frame(i)``) and its mask."""
    w, h = cam.size
    vp = cam._vp(i)
    p = _Painter(_sky_and_ground(cam.style, w, h, vp[1]), ids)
    _paint_road(p, cam.style, w, h, i / cam.fps * _SPEED_MS, vp)
    event = cam._event_at(i)
    if event is not None:
        quad, scale = event.quad(i, h, vp, w)
        if visible_box(quad, w, h)[1] is not None:
            _paint_sign(p, event.name, quad, event.gain, ground_y(vp, scale * h))
    return cam._camera(p.img, i), p.mask


def clip_frames(
    seed: int = 0,
    size: tuple[int, int] | str = (320, 240),
    fps: float = 30.0,
    classes: Sequence[str] | None = None,
):  # -> Iterator[tuple[np.ndarray, np.ndarray]]
    """Endless dash-cam frames (BGR uint8) with their class-id masks, from frame 0."""
    cam = DashCam(seed=seed, size=size, fps=fps)
    ids = _ids(resolve_segmentation_classes(classes))
    i = 0
    while True:
        yield _clip_frame(cam, i, ids)
        i += 1


def _check_masks_dir(path: Path) -> None:
    # atomic_dir replaces the whole folder: only an earlier clip's masks may be replaced.
    if path.exists() and not path.is_dir():
        raise DataError(f"mask folder {path} exists and is not a folder", "choose another path")
    if path.is_dir() and not all(_MASK_NAME.match(p.name) for p in path.iterdir()):
        raise DataError(
            f"mask folder {path} holds files that are not a clip's masks; it would be replaced",
            "choose another clip path, or remove the folder",
        )


def write_segmentation_clip(
    path: str | os.PathLike[str],
    seconds: float = 10.0,
    fps: float = 30.0,
    size: tuple[int, int] | str = (320, 240),
    seed: int = 0,
    classes: Sequence[str] | None = None,
    progress: bool = True,
) -> Path:
    """Write a synthetic dash-cam clip ``path`` (.mp4) with a mask per frame; returns ``path``.

    Beside it: ``<stem>.masks/000000.png ...`` (one single-channel class-id PNG per frame) and
    ``<stem>.json``: ``task``, ``labels``, ``fps``, ``size`` [w, h], ``seed``,
    ``frame_count``, ``masks`` (the mask folder's name, beside the JSON) and ``ignore_index``.
    The road, its markings and the roadside move as the car drives; signs approach as in
    `edgevision.data.video`.
    """
    out = Path(path)
    if out.suffix.lower() != ".mp4":
        raise DataError(f"video path {out} must end in .mp4", f"use {out.with_suffix('.mp4')}")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 < seconds <= 3600:
        raise DataError(f"clip length {seconds!r} s is out of range", "use 0 < seconds <= 3600")
    cam = DashCam(seed=seed, size=size, fps=fps)
    names = resolve_segmentation_classes(classes)
    ids = _ids(names)
    n = max(1, round(seconds * cam.fps))
    check_output_file(out, "video path")
    masks_dir = out.with_name(f"{out.stem}.masks")
    _check_masks_dir(masks_dir)
    digits = max(6, len(str(n - 1)))
    with (
        progress_bar(n, "dash-cam clip", progress) as advance,
        atomic_dir(masks_dir) as mtmp,
        _writing_clip(out, cam.fps, cam.size, n) as writer,
    ):
        for i in range(n):
            frame, mask = _clip_frame(cam, i, ids)
            writer.write(frame)
            (mtmp / f"{i:0{digits}d}.png").write_bytes(_png(mask))
            advance()
    meta = {
        "task": "segmentation",
        "generator": GENERATOR,
        "labels": names,
        "fps": cam.fps,
        "size": list(cam.size),
        "seed": cam.seed,
        "fourcc": FOURCC,
        "frame_count": n,
        "masks": masks_dir.name,
        "ignore_index": IGNORE_INDEX,
    }
    atomic_write_json(out.with_suffix(".json"), meta)
    return out


def read_segmentation_truth(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The truth JSON of a segmentation clip (give the .mp4 or the .json path); ``masks``
    becomes the absolute mask folder."""
    path = Path(path).with_suffix(".json")
    fix = "write the clip with edgevision.data.synth_segment.write_segmentation_clip"
    data = read_json(path, "segmentation ground truth", DataError, fix)
    if not isinstance(data, dict) or data.get("task") != "segmentation":
        raise DataError(f"{path} is not a segmentation clip's ground truth", fix)
    return {**data, "masks": str(path.parent / data["masks"])}
