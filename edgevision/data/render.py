"""Drawing shared by the synthetic sign dataset and the dash-cam clip (numpy + OpenCV only).

Both use the same sign templates, the same road scenes and the same screen geometry, so a model
trained on the dataset images sees the same kind of pixels when it classifies whole video frames:
a dataset image of a sign is a dash-cam frame in which that sign is close.

Sizes here are ``(width, height)`` as OpenCV and ``"160x120"`` strings write them (note that
`ModelSpec.input_size` is ``(height, width)``).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from edgevision.errors import DataError
from edgevision.memo import byte_lru_cache
from edgevision.opencv import cv2

SIGN_CLASSES: tuple[str, ...] = (
    "speed_limit_30",
    "speed_limit_50",
    "speed_limit_60",
    "speed_limit_80",
    "speed_limit_100",
    "speed_limit_120",
    "stop",
    "yield",
    "no_entry",
    "pedestrian_crossing",
    "no_overtaking",
    "priority_road",
)
BACKGROUND = "background"

# A sign is "classifiable" once its extent is this fraction of the frame height: the dataset's
# sign images start here and the clip's ground truth switches from background to the sign here.
MIN_SIGN_SCALE = 0.30
MAX_SIGN_SCALE = 0.90
# Background images may hold a far-away sign no larger than this (a gap below MIN_SIGN_SCALE).
TINY_SIGN_SCALE = (0.04, 0.16)
# A sign cut by the frame edge still counts while this fraction of it is inside.
MIN_VISIBLE = 0.6

_TEMPLATE_PX = 128
_SUPERSAMPLE = 2
_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")

RED = (30, 30, 200)
WHITE = (245, 245, 245)
BLACK = (25, 25, 25)
BLUE = (170, 80, 20)
YELLOW = (20, 200, 245)


def parse_size(text: str | tuple[int, int], what: str = "size") -> tuple[int, int]:
    """Parse ``"160x120"`` (or a ``(w, h)`` pair) into ``(width, height)``, each 16..4096."""
    if isinstance(text, str):
        match = _SIZE_RE.match(text)
        if not match:
            raise DataError(f"{what} {text!r} is not WIDTHxHEIGHT", "write it like 160x120")
        w, h = int(match.group(1)), int(match.group(2))
    else:
        try:
            w, h = (int(v) for v in text)
        except (TypeError, ValueError):
            raise DataError(f"{what} {text!r} is not a (width, height) pair") from None
    if not (16 <= w <= 4096 and 16 <= h <= 4096):
        raise DataError(f"{what} {w}x{h} is out of range", "use 16..4096 pixels per side")
    return w, h


# ---------------------------------------------------------------------------- sign templates


def _fill(img: np.ndarray, alpha: np.ndarray, pts: np.ndarray, color: tuple[int, int, int]):
    pts = np.round(pts).astype(np.int32)
    cv2.fillPoly(img, [pts], color, cv2.LINE_AA)
    cv2.fillPoly(alpha, [pts], 255, cv2.LINE_AA)


def _disc(img: np.ndarray, alpha: np.ndarray, s: int, color: tuple[int, int, int]) -> None:
    c, r = s // 2, s // 2 - 1
    cv2.circle(img, (c, c), r, color, -1, cv2.LINE_AA)
    cv2.circle(alpha, (c, c), r, 255, -1, cv2.LINE_AA)


def _circle(img: np.ndarray, s: int, frac: float, color: tuple[int, int, int]) -> None:
    c = s // 2
    cv2.circle(img, (c, c), round((s / 2 - 1) * frac), color, -1, cv2.LINE_AA)


def _text_in_box(
    img: np.ndarray, text: str, box: tuple[float, float, float, float], color, weight: int = 9
) -> None:
    """Draw ``text`` stretched to fill ``box`` (x0, y0, x1, y1): road-sign digits are tall."""
    font = cv2.FONT_HERSHEY_DUPLEX
    (tw, th), base = cv2.getTextSize(text, font, 4.0, weight)
    patch = np.zeros((th + base + 2 * weight, tw + 2 * weight), np.uint8)
    cv2.putText(patch, text, (weight, th + weight), font, 4.0, 255, weight, cv2.LINE_AA)
    ys, xs = np.nonzero(patch)
    patch = patch[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    x0, y0, x1, y1 = (round(v) for v in box)
    mask = cv2.resize(patch, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    m = mask[..., None].astype(np.float32) / 255.0
    roi = img[y0:y1, x0:x1].astype(np.float32)
    img[y0:y1, x0:x1] = np.round(roi * (1 - m) + np.array(color, np.float32) * m).astype(np.uint8)


def _speed_limit(img: np.ndarray, alpha: np.ndarray, s: int, value: int) -> None:
    _disc(img, alpha, s, RED)
    _circle(img, s, 0.76, WHITE)
    text = str(value)
    half_w = 0.25 if len(text) == 2 else 0.31
    _text_in_box(img, text, (s * (0.5 - half_w), s * 0.3, s * (0.5 + half_w), s * 0.7), BLACK)


def _polygon(s: int, n: int, start_deg: float, frac: float = 1.0) -> np.ndarray:
    c, r = s / 2, (s / 2 - 1) * frac
    ang = np.deg2rad(start_deg + 360.0 / n * np.arange(n))
    return np.stack([c + r * np.cos(ang), c + r * np.sin(ang)], axis=1)


def _stop(img: np.ndarray, alpha: np.ndarray, s: int) -> None:
    k = 1.0 / math.cos(math.pi / 8)  # circumradius whose flat sides touch the square
    _fill(img, alpha, _polygon(s, 8, 22.5, k), WHITE)
    cv2.fillPoly(img, [np.round(_polygon(s, 8, 22.5, 0.92 * k)).astype(np.int32)], RED, cv2.LINE_AA)
    _text_in_box(img, "STOP", (s * 0.15, s * 0.37, s * 0.85, s * 0.63), WHITE, weight=8)


def _yield(img: np.ndarray, alpha: np.ndarray, s: int) -> None:
    m, h = 2.0, (s - 4.0) * math.sqrt(3) / 2
    top = (s - h) / 2
    tri = np.array([[m, top], [s - m, top], [s / 2, top + h]])
    _fill(img, alpha, tri, RED)
    centroid = tri.mean(axis=0)
    inner = centroid + (tri - centroid) * 0.58
    cv2.fillPoly(img, [np.round(inner).astype(np.int32)], WHITE, cv2.LINE_AA)


def _no_entry(img: np.ndarray, alpha: np.ndarray, s: int) -> None:
    _disc(img, alpha, s, WHITE)
    _circle(img, s, 0.93, RED)
    cv2.rectangle(
        img,
        (round(s * 0.19), round(s * 0.41)),
        (round(s * 0.81), round(s * 0.59)),
        WHITE,
        -1,
        cv2.LINE_AA,
    )


def _pedestrian(img: np.ndarray, alpha: np.ndarray, s: int) -> None:
    square = np.array([[2, 2], [s - 3, 2], [s - 3, s - 3], [2, s - 3]], np.float64)
    _fill(img, alpha, square, WHITE)
    cv2.rectangle(
        img,
        (round(s * 0.05), round(s * 0.05)),
        (round(s * 0.95), round(s * 0.95)),
        BLUE,
        -1,
        cv2.LINE_AA,
    )
    tri = np.array([[s * 0.5, s * 0.12], [s * 0.9, s * 0.86], [s * 0.1, s * 0.86]])
    cv2.fillPoly(img, [np.round(tri).astype(np.int32)], WHITE, cv2.LINE_AA)
    for x in np.linspace(0.3, 0.62, 4):  # zebra stripes under the walker
        cv2.rectangle(
            img,
            (round(s * x), round(s * 0.77)),
            (round(s * (x + 0.07)), round(s * 0.81)),
            BLACK,
            -1,
            cv2.LINE_AA,
        )
    t = max(2, round(s * 0.045))

    def line(a: tuple[float, float], b: tuple[float, float]) -> None:
        pa, pb = (round(a[0] * s), round(a[1] * s)), (round(b[0] * s), round(b[1] * s))
        cv2.line(img, pa, pb, BLACK, t, cv2.LINE_AA)

    cv2.circle(img, (round(s * 0.52), round(s * 0.36)), round(s * 0.05), BLACK, -1, cv2.LINE_AA)
    line((0.51, 0.43), (0.47, 0.60))  # body
    line((0.47, 0.60), (0.39, 0.74))  # back leg
    line((0.47, 0.60), (0.56, 0.67))  # front thigh
    line((0.56, 0.67), (0.58, 0.75))  # front shin
    line((0.50, 0.46), (0.41, 0.55))  # back arm
    line((0.50, 0.46), (0.59, 0.53))  # front arm


def _car(img: np.ndarray, s: int, cx: float, color: tuple[int, int, int]) -> None:
    """A car seen from behind: cabin, body, two wheels."""
    w = s * 0.2

    def p(x: float, y: float) -> tuple[int, int]:
        return round(cx + x * w), round(s * y)

    cabin = np.array([p(-0.36, 0.33), p(0.36, 0.33), p(0.46, 0.47), p(-0.46, 0.47)])
    cv2.fillPoly(img, [cabin], color, cv2.LINE_AA)
    cv2.rectangle(img, p(-0.5, 0.46), p(0.5, 0.62), color, -1, cv2.LINE_AA)
    cv2.rectangle(img, p(-0.45, 0.6), p(-0.22, 0.68), BLACK, -1, cv2.LINE_AA)
    cv2.rectangle(img, p(0.22, 0.6), p(0.45, 0.68), BLACK, -1, cv2.LINE_AA)
    window = np.array([p(-0.28, 0.36), p(0.28, 0.36), p(0.34, 0.44), p(-0.34, 0.44)])
    cv2.fillPoly(img, [window], WHITE, cv2.LINE_AA)


def _no_overtaking(img: np.ndarray, alpha: np.ndarray, s: int) -> None:
    _disc(img, alpha, s, RED)
    _circle(img, s, 0.76, WHITE)
    _car(img, s, s * 0.37, RED)
    _car(img, s, s * 0.63, BLACK)


def _priority(img: np.ndarray, alpha: np.ndarray, s: int) -> None:
    _fill(img, alpha, _polygon(s, 4, 0), (60, 60, 60))
    cv2.fillPoly(img, [np.round(_polygon(s, 4, 0, 0.95)).astype(np.int32)], WHITE, cv2.LINE_AA)
    cv2.fillPoly(img, [np.round(_polygon(s, 4, 0, 0.66)).astype(np.int32)], BLACK, cv2.LINE_AA)
    cv2.fillPoly(img, [np.round(_polygon(s, 4, 0, 0.61)).astype(np.int32)], YELLOW, cv2.LINE_AA)


_DRAWERS: dict[str, Callable[[np.ndarray, np.ndarray, int], None]] = {
    **{
        f"speed_limit_{v}": functools.partial(_speed_limit, value=v)
        for v in (30, 50, 60, 80, 100, 120)
    },
    "stop": _stop,
    "yield": _yield,
    "no_entry": _no_entry,
    "pedestrian_crossing": _pedestrian,
    "no_overtaking": _no_overtaking,
    "priority_road": _priority,
}


@functools.cache
def _master(name: str) -> tuple[np.ndarray, np.ndarray]:
    # Drawn large and shrunk with INTER_AREA: cheap anti-aliasing of digits and edges.
    s = _TEMPLATE_PX * _SUPERSAMPLE
    img = np.zeros((s, s, 3), np.uint8)
    alpha = np.zeros((s, s), np.uint8)
    _DRAWERS[name](img, alpha, s)
    small = cv2.resize(img, (_TEMPLATE_PX, _TEMPLATE_PX), interpolation=cv2.INTER_AREA)
    a = cv2.resize(alpha, (_TEMPLATE_PX, _TEMPLATE_PX), interpolation=cv2.INTER_AREA)
    return small, a


@byte_lru_cache(4 << 20)  # sizes vary 8..128 px: bound by bytes, not entries (long runs)
def sign_template(name: str, px: int = _TEMPLATE_PX) -> tuple[np.ndarray, np.ndarray]:
    """The sign ``name`` as ``px``-square premultiplied BGR float32 and alpha float32 in 0..1."""
    if name not in _DRAWERS:
        raise DataError(f"unknown sign {name!r}", f"use one of: {', '.join(SIGN_CLASSES)}")
    img, alpha = _master(name)
    if px != _TEMPLATE_PX:
        # Shrinking before the warp avoids the aliasing a large bilinear downscale would give.
        img = cv2.resize(img, (px, px), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(alpha, (px, px), interpolation=cv2.INTER_AREA)
    a = alpha.astype(np.float32) / 255.0
    return img.astype(np.float32) * a[..., None], a


# ---------------------------------------------------------------------------- placing signs


def sign_quad(
    center: tuple[float, float], size: float, rotation_deg: float = 0.0, yaw: float = 0.0
) -> np.ndarray:
    """Corners (4x2, clockwise from top-left) of a ``size``-pixel sign seen turned by ``yaw``.

    ``yaw`` (radians) narrows the sign and makes its nearer edge taller, as for a sign at the
    roadside seen at an angle; ``rotation_deg`` tilts it in the image plane.
    """
    h = size / 2.0
    local = np.array([[-h, -h], [h, -h], [h, h], [-h, h]], np.float64)
    local[:, 0] *= math.cos(yaw)
    local[:, 1] *= 1.0 + 0.18 * math.sin(yaw) * np.sign(local[:, 0])
    a = math.radians(rotation_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (local @ rot.T + np.asarray(center, np.float64)).astype(np.float32)


def visible_box(quad: np.ndarray, w: int, h: int) -> tuple[float, list[int] | None]:
    """The fraction of ``quad``'s area inside a ``w``x``h`` frame and its clipped [x, y, w, h]."""
    area = abs(cv2.contourArea(quad.astype(np.float32)))
    frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    inter, pts = cv2.intersectConvexConvex(quad.astype(np.float32), frame)
    if area <= 0 or inter <= 0 or pts is None:
        return 0.0, None
    pts = pts.reshape(-1, 2)
    x0, y0 = np.floor(pts.min(axis=0)).astype(int)
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int)
    return float(inter / area), [int(x0), int(y0), int(x1 - x0), int(y1 - y0)]


def draw_sign(frame: np.ndarray, name: str, quad: np.ndarray, gain: float = 1.0) -> None:
    """Composite sign ``name`` onto ``frame`` (in place) with its corners at ``quad``."""
    fh, fw = frame.shape[:2]
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)
    if x1 <= x0 or y1 <= y0:
        return
    edge = float(np.linalg.norm(quad[1] - quad[0]) + np.linalg.norm(quad[2] - quad[1])) / 2
    px = int(np.clip(math.ceil(edge), 8, _TEMPLATE_PX))
    premult, alpha = sign_template(name, px)
    src = np.array([[0, 0], [px, 0], [px, px], [0, px]], np.float32)
    dst = (quad - np.array([x0, y0], np.float32)).astype(np.float32)
    m = cv2.getPerspectiveTransform(src, dst)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR
    warped = cv2.warpPerspective(premult, m, size, flags=flags, borderValue=(0, 0, 0))
    a = cv2.warpPerspective(alpha, m, size, flags=flags, borderValue=0)[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    out = roi * (1.0 - a) + warped * gain
    frame[y0:y1, x0:x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def draw_pole(
    frame: np.ndarray,
    quad: np.ndarray,
    ground_y: float,
    color: tuple[int, int, int] = (120, 120, 125),
) -> None:
    """A post from the sign's centre down to ``ground_y`` (drawn before the sign)."""
    c = quad.mean(axis=0)
    size = float(np.linalg.norm(quad[2] - quad[1]))
    half = max(1.0, 0.035 * size)
    bottom = max(ground_y, c[1])
    pts = np.array(
        [
            [c[0] - half, c[1]],
            [c[0] + half, c[1]],
            [c[0] + half * 1.3, bottom],
            [c[0] - half * 1.3, bottom],
        ]
    )
    cv2.fillConvexPoly(frame, np.round(pts).astype(np.int32), color, cv2.LINE_AA)


# ---------------------------------------------------------------------------- road scenes


@dataclass(frozen=True)
class SceneStyle:
    """Colours and layout of a procedural road scene; `draw_road` animates it with ``phase``."""

    sky_top: tuple[float, float, float]
    sky_bottom: tuple[float, float, float]
    ground: tuple[float, float, float]
    road: tuple[float, float, float]
    hills: tuple[float, ...]  # heights (fraction of the horizon) of a distant skyline
    hill_color: tuple[float, float, float]
    lane_offset: float  # the camera's lateral position on the road, metres from the centre line
    roadside: tuple[tuple[float, float, int], ...]  # (lateral m, phase offset, kind) per object
    centre_dashes: bool

    @classmethod
    def sample(cls, rng: np.random.Generator) -> SceneStyle:
        """A random style: daylight to dusk, green to dry verges, with or without a skyline."""
        sky_top = tuple(rng.uniform([120, 60, 20], [250, 200, 160]))
        sky_bottom = tuple(np.clip(np.array(sky_top) + rng.uniform(20, 80), 0, 255))
        ground = tuple(rng.uniform([20, 60, 40], [90, 150, 150]))
        road = tuple(np.full(3, rng.uniform(55, 125)) + rng.uniform(-8, 8, 3))
        n_hills = int(rng.integers(0, 9))
        hills = tuple(rng.uniform(0.02, 0.35, n_hills))
        hill_color = tuple(rng.uniform([60, 70, 50], [140, 140, 130]))
        roadside = tuple(
            (
                float(rng.choice([-1, 1]) * rng.uniform(5.5, 12)),
                float(rng.uniform()),
                int(rng.integers(0, 3)),
            )
            for _ in range(int(rng.integers(1, 6)))
        )
        return cls(
            sky_top,
            sky_bottom,
            ground,
            road,
            hills,
            hill_color,
            float(rng.uniform(1.2, 2.3)),
            roadside,
            bool(rng.uniform() < 0.8),
        )


_CAM_H = 1.3  # camera height above the road, metres
_DASH_PERIOD = 12.0  # metres between the starts of two centre-line dashes
_OBJECT_PERIOD = 30.0  # metres between repeats of one roadside object


def _project(vp: tuple[float, float], f: float, x: float, z: float, y: float = 0.0):
    """Screen point of world (lateral x, height y above road, distance z)."""
    return vp[0] + f * x / z, vp[1] + f * (_CAM_H - y) / z


def _ground_poly(vp, f, x0: float, x1: float, z0: float, z1: float) -> np.ndarray:
    pts = [
        _project(vp, f, x0, z0),
        _project(vp, f, x1, z0),
        _project(vp, f, x1, z1),
        _project(vp, f, x0, z1),
    ]
    return np.round(np.array(pts) * 16).astype(np.int32)  # 4 bits of sub-pixel precision


def _sky_and_ground(style: SceneStyle, w: int, h: int, horizon: float) -> np.ndarray:
    t = np.clip(np.arange(h, dtype=np.float32) / max(horizon, 1.0), 0, 1)[:, None]
    sky = np.array(style.sky_top, np.float32) * (1 - t) + np.array(style.sky_bottom) * t
    img = np.repeat(sky[:, None, :], w, axis=1)
    hz = int(np.clip(round(horizon), 0, h))
    depth = np.linspace(0.75, 1.1, h - hz, dtype=np.float32)[:, None, None]
    img[hz:] = np.array(style.ground, np.float32) * depth  # nearer ground is brighter
    out = img.astype(np.uint8)
    if style.hills:
        xs = np.linspace(0, w, len(style.hills) + 2)
        ys = [horizon] + [horizon - hh * horizon for hh in style.hills] + [horizon]
        pts = np.array(list(zip(xs, ys, strict=True)) + [(w, horizon + 1), (0, horizon + 1)])
        cv2.fillPoly(
            out, [np.round(pts * 16).astype(np.int32)], style.hill_color, cv2.LINE_AA, shift=4
        )
    return out


def _roadside_object(
    img: np.ndarray, vp, f: float, x: float, z: float, kind: int, color_shift: float
) -> None:
    base = _project(vp, f, x, z)
    scale = f / z
    if kind == 0:  # tree: trunk and canopy
        trunk_top = _project(vp, f, x, z, 2.0)
        cv2.line(
            img,
            np.round(base).astype(int),
            np.round(trunk_top).astype(int),
            (40, 60, 80),
            max(1, round(0.3 * scale)),
            cv2.LINE_AA,
        )
        top = _project(vp, f, x, z, 3.5)
        axes = (max(1, round(1.6 * scale)), max(1, round(1.9 * scale)))
        green = (40 + color_shift, 110 + color_shift, 50)
        cv2.ellipse(img, np.round(top).astype(int), axes, 0, 0, 360, green, -1, cv2.LINE_AA)
    elif kind == 1:  # delineator post: white with a black band
        top = _project(vp, f, x, z, 1.0)
        t = max(1, round(0.12 * scale))
        cv2.line(img, np.round(base).astype(int), np.round(top).astype(int), WHITE, t)
        band = _project(vp, f, x, z, 0.8)
        cv2.line(img, np.round(band).astype(int), np.round(top).astype(int), BLACK, t)
    else:  # lamp post or a bare sign post
        top = _project(vp, f, x, z, 6.0)
        cv2.line(
            img,
            np.round(base).astype(int),
            np.round(top).astype(int),
            (110, 110, 115),
            max(1, round(0.15 * scale)),
            cv2.LINE_AA,
        )


def _road_layout(
    style: SceneStyle, w: int, distance: float, vp: tuple[float, float]
) -> tuple[float, np.ndarray, list[np.ndarray], list[tuple[float, float, int]]]:
    """What `draw_road` draws over `_sky_and_ground`, in its order: the focal length, the road
    polygon, the lane markings (edge lines, then the centre dashes) and the roadside objects
    ``(z, x, kind)``, far ones first."""
    f = 0.8 * w
    z_near, z_far = 0.5, 400.0
    left, right = -3.6 - style.lane_offset, 3.6 - style.lane_offset
    road = _ground_poly(vp, f, left, right, z_near, z_far)
    marks = [
        _ground_poly(vp, f, edge - 0.08, edge + 0.08, z_near, z_far)
        for edge in (left + 0.3, right - 0.3)
    ]
    if style.centre_dashes:
        x = -style.lane_offset
        start = -(distance % _DASH_PERIOD)
        for k in range(40):
            z0 = z_near + start + k * _DASH_PERIOD
            if z0 + 3.0 <= z_near:
                continue
            z0 = max(z0, z_near)
            marks.append(_ground_poly(vp, f, x - 0.08, x + 0.08, z0, z0 + 3.0))
    objects = []
    for x, offset, kind in style.roadside:
        for k in range(6):
            z = (offset * _OBJECT_PERIOD - distance) % _OBJECT_PERIOD + k * _OBJECT_PERIOD + 2.0
            objects.append((z, x - style.lane_offset, kind))
    return f, road, marks, sorted(objects, reverse=True)


def _draw_marks(img: np.ndarray, marks: list[np.ndarray]) -> None:
    for poly in marks:
        cv2.fillPoly(img, [poly], WHITE, cv2.LINE_AA, shift=4)


def _draw_roadside(img: np.ndarray, vp, f: float, objects: list[tuple[float, float, int]]) -> None:
    for z, x, kind in objects:
        _roadside_object(img, vp, f, x, z, kind, 20.0 * (kind == 0) * (x > 0))


def draw_road(
    style: SceneStyle, w: int, h: int, distance: float, vp: tuple[float, float]
) -> np.ndarray:
    """A road scene seen from a car that has driven ``distance`` metres; ``vp`` is the vanishing
    point. Lane dashes and roadside objects move towards the camera as ``distance`` grows."""
    img = _sky_and_ground(style, w, h, vp[1])
    f, road, marks, objects = _road_layout(style, w, distance, vp)
    cv2.fillPoly(img, [road], style.road, cv2.LINE_AA, shift=4)
    _draw_marks(img, marks)
    _draw_roadside(img, vp, f, objects)
    return img


def ground_y(vp: tuple[float, float], size_px: float, sign_m: float = 0.8) -> float:
    """Screen row of the road under a sign of ``sign_m`` metres drawn ``size_px`` tall."""
    # Same pinhole model as draw_road: size = f * sign_m / z and ground = vp + f * H / z.
    return vp[1] + size_px * (_CAM_H / sign_m)


# ---------------------------------------------------------------------------- camera effects


def camera_effects(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Lighting, colour cast, blur and sensor noise, drawn from ``rng``; returns a new image."""
    out = img.astype(np.float32)
    gain = rng.uniform(1 - 0.45 * strength, 1 + 0.35 * strength)
    cast = rng.uniform(1 - 0.12 * strength, 1 + 0.12 * strength, 3).astype(np.float32)
    contrast = rng.uniform(1 - 0.35 * strength, 1 + 0.2 * strength)
    mean = out.mean()
    out = ((out - mean) * contrast + mean) * gain * cast
    gamma = rng.uniform(1 - 0.3 * strength, 1 + 0.3 * strength)
    out = 255.0 * (np.clip(out, 0, 255) / 255.0) ** gamma
    blur = rng.uniform()
    if blur < 0.45:
        sigma = rng.uniform(0.3, 0.3 + 1.0 * strength)
        out = cv2.GaussianBlur(out, (0, 0), sigma)
    elif blur < 0.6:  # horizontal-ish motion blur
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(-30, 30), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (k, k))
        out = cv2.filter2D(out, -1, kernel / max(kernel.sum(), 1e-6))
    noise = rng.uniform(0, 7 * strength)
    if noise > 0.5:
        out += rng.normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- progress


@contextmanager
def progress_bar(total: int, description: str, enabled: bool = True) -> Iterator[Callable]:
    """A rich progress bar on stderr; yields ``advance(n=1)``. Disabled, it is a no-op."""
    if not enabled:
        yield lambda n=1: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    console = Console(stderr=True)
    columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    # Not a terminal (CI logs, pipes): no bar, rather than one line per refresh.
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
