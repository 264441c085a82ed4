"""The varied world: frames, strings, camera, light and occluders drawn per photo, over a reef.

One photo is rendered in two planes:

* the *plane* image: the reef seen from above at warped-pixel scale, ``offset`` px of reef on
  every side of the quadrat's interior (interior TL at plane pixel (offset, offset)), with the
  frame, its tape, legs and label card, the strings and their shadows drawn in it;
* the *photo* (raw frame): the plane image through a pinhole camera tilted and rolled as a
  diver holds it, then the water and the camera (colour cast with depth, backscatter, caustics,
  vignetting, defocus, motion blur, exposure, noise), and the occluders (fish, fins, the
  photographer's shadow, coral overhanging the frame).

Every draw of the frame, the camera, the light and the occluders comes from a :class:`Shot`,
whose seeds a caller may fix: the same reef re-photographed with the frame re-placed and other
light is the same scene generator with another ``Shot``.

Truth: the inner corners (TL TR BR BL) are the interior's corners through the camera; the grid
points are where the drawn strings cross (strings sag, so they are not the template's points
exactly), or none when the frame has no grid; the string mask is what the strings cover in the
warped frame; the occluder mask says what hides the reef in the photo. Colony truth is the part
of each colony a human annotator would outline: the visible part (colonies above it and dead
patches cut it), not cut by transient occluders (fish, fins, shadow), which the occluder mask
marks instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from quadratseg.geometry import polygons_to_mask
from quadratseg.keypoints import grid_template_xy
from quadratseg.synth.appearance import smooth_noise
from quadratseg.synth.reef import (
    Colony,
    PlaneMap,
    VisiblePart,
    outside_colonies,
    paint_reef,
    place_varied_colonies,
    substrate,
    visible_parts,
)
from quadratseg.warp import check_quadrilateral, transform_points, warp_image

FRAMES = ("criobe", "black_tape", "metal", "pvc", "tube")
FRAME_WEIGHTS = (0.2, 0.2, 0.15, 0.1, 0.35)
NO_FRAME = "none"  # a shot of reef alone (``no_frame_share``, or ``Shot(frame="none")``)
STRINGS = ("grid", "diagonals", "none")
EXIF_ORIENTATIONS = (1, 3, 6, 8)
OCCLUDER_CODES = {"fish": 1, "fin": 2, "shadow": 3, "overhang": 4, "frame": 5}

STRING_COLOURS = {
    "white": (236, 234, 222),
    "yellow": (226, 210, 92),
    "orange": (232, 118, 58),
    "red": (205, 60, 50),
    "green": (90, 170, 90),
    "black": (30, 30, 30),
}
TAPE_COLOURS = [(40, 170, 160), (60, 200, 215), (215, 60, 70), (30, 140, 100), (230, 200, 60), (60, 90, 200)]
PVC_COLOURS = [(228, 226, 214), (150, 152, 150), (225, 120, 40), (225, 200, 60), (60, 100, 190), (40, 40, 40)]
# the graduated strip of a tube frame (a metal ruler): brass, brown, steel, pale translucent
# (darker than the tube in every real photo); drawn with STRIP_WEIGHTS
STRIP_COLOURS = [(105.0, 75.0, 48.0), (90.0, 92.0, 92.0), (150.0, 120.0, 60.0), (170.0, 178.0, 165.0)]
STRIP_WEIGHTS = (0.35, 0.3, 0.2, 0.15)


@dataclass(frozen=True)
class Shot:
    """The draws of one photograph: frame, camera, light and occluders, each from its own seed.

    ``frame`` and ``strings`` fix the frame style and strings (None: drawn from ``frame_seed``);
    ``exif_orientation`` fixes how the file is stored (None: drawn from ``camera_seed``).
    Keep ``frame_seed`` and change ``camera_seed`` / ``light_seed`` to photograph the same
    quadrat again with the frame re-placed and other light.
    """

    frame_seed: int
    camera_seed: int
    light_seed: int
    occluder_seed: int
    frame: str | None = None
    strings: str | None = None
    exif_orientation: int | None = None

    @classmethod
    def draw(cls, rng: np.random.Generator, **fixed) -> Shot:
        """Four seeds from ``rng`` (always four draws, whatever is fixed), then the ``fixed`` fields."""
        seeds = rng.integers(0, 2**31, 4)
        shot = cls(*(int(s) for s in seeds))
        return replace(shot, **fixed) if fixed else shot


@dataclass
class FrameStyle:
    """A drawn frame: style, bar width (share of the side), colours, strings and their look."""

    style: str
    strings: str
    bar: float
    rgb: tuple[float, float, float]
    string_rgb: tuple[float, float, float]
    string_width: float  # share of the side
    sag: np.ndarray = field(default_factory=lambda: np.zeros(0))  # per string, share of the side
    shadow_offset: tuple[float, float] = (0.0, 0.0)  # share of the side
    legs: bool = False
    seed: int = 0
    strip: float = 0.0  # tube frames: the graduated strip's width (share of the side), part of ``bar``


def draw_frame_style(shot: Shot, no_frame_share: float = 0.0) -> FrameStyle:
    """The frame of a shot (see the distributions table in docs/synthetic.md).

    ``no_frame_share`` of the shots (drawn from the frame seed's own stream, so the other shots keep
    their frames) have no frame at all: style and strings ``"none"`` (``Shot(frame="none")`` fixes it).

    Raises:
        ValueError: ``no_frame_share`` outside 0..1, or ``shot.frame`` not a frame of :data:`FRAMES`
            nor ``"none"``.
    """
    if not 0.0 <= no_frame_share <= 1.0:
        raise ValueError(f"no_frame_share must be within 0..1 (a share of the shots), got {no_frame_share}")
    if shot.frame is not None and shot.frame not in (*FRAMES, NO_FRAME):
        raise ValueError(f"frame must be one of {', '.join((*FRAMES, NO_FRAME))}, got {shot.frame!r}")
    bare = shot.frame == NO_FRAME or (
        no_frame_share > 0 and np.random.default_rng([shot.frame_seed, 3]).random() < no_frame_share
    )
    if bare:
        return FrameStyle(NO_FRAME, "none", 0.0, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0), 0.0)
    rng = np.random.default_rng([shot.frame_seed, 1])
    style = shot.frame or FRAMES[int(rng.choice(len(FRAMES), p=FRAME_WEIGHTS))]
    if shot.strings is not None:
        strings = shot.strings
    elif style == "criobe":
        strings = "grid"
    elif style == "black_tape":
        strings = "diagonals"
    elif style == "metal":
        strings = "none" if rng.random() < 0.6 else "grid"
    elif style == "tube":
        strings = "none" if rng.random() < 0.8 else "grid"
    else:
        strings = "grid" if rng.random() < 0.7 else "none"
    if style == "criobe":
        rgb, bar = (225.0, 222.0, 205.0), rng.uniform(0.035, 0.05)
        string_names = ["white", "yellow"]
    elif style == "black_tape":
        rgb, bar = (32.0, 32.0, 34.0), rng.uniform(0.04, 0.07)
        string_names = ["orange", "red", "yellow"]
    elif style == "metal":
        rgb, bar = tuple(rng.uniform(150, 200) + rng.uniform(-8, 8, 3)), rng.uniform(0.022, 0.035)
        string_names = ["white", "yellow", "black"]
    elif style == "tube":  # silver tube outside, graduated strip inside: about 1.5 % + 2.5 % of the side
        rgb = tuple(rng.uniform(215, 240) + rng.uniform(-6, 6, 3))
        strip = rng.uniform(0.018, 0.03)
        bar = strip + rng.uniform(0.012, 0.02)
        string_names = ["white", "yellow", "black"]
    else:
        rgb, bar = (
            tuple(float(v) for v in PVC_COLOURS[int(rng.integers(len(PVC_COLOURS)))]),
            rng.uniform(0.03, 0.05),
        )
        string_names = list(STRING_COLOURS)
    string = STRING_COLOURS[string_names[int(rng.integers(len(string_names)))]]
    n_strings = {"grid": 22, "diagonals": 2, "none": 0}[strings]
    sag = rng.uniform(-1, 1, n_strings) * rng.uniform(0.0, 0.004)
    angle = rng.uniform(0, 2 * np.pi)
    dist = rng.uniform(0.002, 0.008)
    return FrameStyle(
        style=style,
        strings=strings,
        bar=float(bar),
        rgb=tuple(float(v) for v in rgb),
        string_rgb=tuple(float(v) for v in string),
        string_width=float(rng.uniform(0.0025, 0.006)),
        sag=sag,
        shadow_offset=(float(dist * np.cos(angle)), float(dist * np.sin(angle))),
        legs=style == "metal" or (style == "pvc" and rng.random() < 0.3),
        seed=int(rng.integers(0, 2**31)),
        strip=float(strip) if style == "tube" else 0.0,
    )


# ---------------------------------------------------------------- strings


def _bow(t: np.ndarray) -> np.ndarray:
    return 4.0 * t * (1.0 - t)


def string_curves(frame: FrameStyle, size_wh: tuple[int, int], rows: int, cols: int) -> list[np.ndarray]:
    """The strings as polylines (N, 2) in warped pixels, each sagging sideways by its ``sag``."""
    sw, sh = size_wh
    s = min(sw, sh)
    t = np.linspace(0.0, 1.0, 97)
    curves = []
    if frame.strings == "grid":
        template = grid_template_xy(rows, cols) * [sw, sh]
        xs = template.reshape(rows, cols, 2)[0, :, 0]
        ys = template.reshape(rows, cols, 2)[:, 0, 1]
        for j, x in enumerate(xs):
            curves.append(np.stack([x + frame.sag[j] * s * _bow(t), t * sh], axis=1))
        for i, y in enumerate(ys):
            curves.append(np.stack([t * sw, y + frame.sag[cols + i] * s * _bow(t)], axis=1))
    elif frame.strings == "diagonals":
        for k, (a, b) in enumerate((((0, 0), (sw, sh)), ((sw, 0), (0, sh)))):
            a, b = np.array(a, float), np.array(b, float)
            normal = np.array([-(b - a)[1], (b - a)[0]]) / np.linalg.norm(b - a)
            curves.append(a + (b - a) * t[:, None] + normal * frame.sag[k] * s * _bow(t)[:, None])
    return curves


def grid_crossings(frame: FrameStyle, size_wh: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """Where the sagging grid strings cross, (rows * cols, 2) row-major in warped pixels.

    Vertical string j: x = x_j + a_j s bow(y / H); horizontal string i: y = y_i + b_i s bow(x / W);
    the crossing is their common point, found by fixed-point iteration (sags are < 1 % of the side,
    so it converges to 1e-9 px in a few steps).
    """
    sw, sh = size_wh
    s = min(sw, sh)
    template = grid_template_xy(rows, cols) * [sw, sh]
    xy = template.copy().reshape(rows, cols, 2)
    a = frame.sag[:cols][None, :] * s
    b = frame.sag[cols : cols + rows][:, None] * s
    x0, y0 = xy[..., 0].copy(), xy[..., 1].copy()
    x, y = x0.copy(), y0.copy()
    for _ in range(50):
        x_new = x0 + a * _bow(y / sh)
        y_new = y0 + b * _bow(x_new / sw)
        done = max(np.abs(x_new - x).max(), np.abs(y_new - y).max()) < 1e-10
        x, y = x_new, y_new
        if done:
            break
    return np.stack([x, y], axis=-1).reshape(rows * cols, 2)


def string_alpha(
    curves: list[np.ndarray], plane_hw: tuple[int, int], offset: float, width_px: float
) -> np.ndarray:
    """Coverage in 0..1 (H, W) float32 of the strings drawn in the plane image (antialiased)."""
    alpha = np.zeros(plane_hw, np.uint8)
    thickness = max(1, round(width_px))
    for curve in curves:
        pts = np.round((curve + offset - 0.5) * 16).astype(np.int32)
        cv2.polylines(alpha, [pts], False, 255, thickness, cv2.LINE_AA, 4)
    return alpha.astype(np.float32) / 255.0


# ---------------------------------------------------------------- the frame in the plane image


def _bar_shading(length: int, width: int, style: str, rng: np.random.Generator) -> np.ndarray:
    """Across-bar shading (width,) for a bar: a cylinder's specular ridge for metal, flat otherwise."""
    t = (np.arange(width) + 0.5) / width
    if style == "metal":
        centre = rng.uniform(0.3, 0.6)
        return 0.55 + 0.35 * np.sin(np.pi * t) + 0.6 * np.exp(-(((t - centre) / 0.08) ** 2))
    if style == "black_tape":
        return 0.9 + 0.2 * np.sin(np.pi * t)
    return 0.8 + 0.25 * np.sin(np.pi * t)


def draw_frame(plane: np.ndarray, to_plane: PlaneMap, frame: FrameStyle) -> np.ndarray:
    """Draw the frame's bars, tape, legs, ruler and label card into ``plane`` in place.

    The bars lie outside the interior (their inner edges are the quadrat's edges); tape sleeves
    and blocks bulge a little over the interior, as on real frames (the corner truth follows the
    bars, as in ``corners.json`` of the real photos). Returns a bool mask (H, W) of the frame's
    pixels in the plane image.
    """
    if frame.style == NO_FRAME:
        return np.zeros(plane.shape[:2], bool)
    if frame.style == "tube":
        return draw_tube_frame(plane, to_plane, frame)
    rng = np.random.default_rng([frame.seed, 2])
    sw, sh = to_plane.interior_wh
    s = min(sw, sh)
    ph, pw = plane.shape[:2]
    b = max(3, round(frame.bar * s))
    ox, oy = to_plane.offset
    rgb = np.array(frame.rgb, np.float32)
    mask = np.zeros((ph, pw), bool)
    # bars as (x0, y0, x1, y1, horizontal)
    bars = [
        (ox - b, oy - b, ox + sw + b, oy, True),
        (ox - b, oy + sh, ox + sw + b, oy + sh + b, True),
        (ox - b, oy - b, ox, oy + sh + b, False),
        (ox + sw, oy - b, ox + sw + b, oy + sh + b, False),
    ]
    if frame.legs:  # diagonal legs from each outer corner, drawn under the bars
        leg = max(2, round(b * rng.uniform(0.8, 1.2)))
        for cx, cy, dx, dy in (
            (ox - b, oy - b, -1, -1),
            (ox + sw + b, oy - b, 1, -1),
            (ox + sw + b, oy + sh + b, 1, 1),
            (ox - b, oy + sh + b, -1, 1),
        ):
            length = s * rng.uniform(0.25, 0.6)
            ang = np.deg2rad(45 + rng.uniform(-15, 15))
            end = (cx + dx * length * np.cos(ang), cy + dy * length * np.sin(ang))
            layer = np.zeros((ph, pw), np.uint8)
            cv2.line(layer, (int(cx), int(cy)), (int(end[0]), int(end[1])), 1, leg, cv2.LINE_AA)
            m = layer.astype(bool)
            plane[m] = rgb * 0.85
            mask |= m
    for x0, y0, x1, y1, horizontal in bars:
        x0c, y0c, x1c, y1c = max(x0, 0), max(y0, 0), min(x1, pw), min(y1, ph)
        if x1c <= x0c or y1c <= y0c:
            continue
        width = (y1 - y0) if horizontal else (x1 - x0)
        shade = _bar_shading(0, width, frame.style, rng).astype(np.float32)
        if horizontal:
            prof = shade[y0c - y0 : y1c - y0][:, None, None]
        else:
            prof = shade[x0c - x0 : x1c - x0][None, :, None]
        region = plane[y0c:y1c, x0c:x1c]
        grain = 1.0 + 0.04 * (smooth_noise(rng, region.shape[:2], max(2, max(region.shape[:2]) // 20)) - 0.5)
        region[:] = np.clip(rgb * prof * grain[..., None], 0, 255)
        mask[y0c:y1c, x0c:x1c] = True

    # tape: blocks along the bars
    def block(x0: float, y0: float, x1: float, y1: float, colour: np.ndarray) -> None:
        x0i, y0i = max(int(x0), 0), max(int(y0), 0)
        x1i, y1i = min(int(np.ceil(x1)), pw), min(int(np.ceil(y1)), ph)
        if x1i > x0i and y1i > y0i:
            region = plane[y0i:y1i, x0i:x1i]
            region[:] = colour * (0.9 + 0.2 * rng.random((y1i - y0i, x1i - x0i, 1)).astype(np.float32))
            mask[y0i:y1i, x0i:x1i] = True

    if frame.style == "criobe":
        for cx, cy in ((ox, oy), (ox + sw, oy), (ox + sw, oy + sh), (ox, oy + sh)):
            m = b * 1.6
            for x0, y0, x1, y1, _h in bars:
                bx0, by0, bx1, by1 = max(x0, cx - m), max(y0, cy - m), min(x1, cx + m), min(y1, cy + m)
                if bx1 > bx0 and by1 > by0:
                    block(bx0, by0, bx1, by1, np.array((215.0, 40.0, 30.0), np.float32))
    elif frame.style == "black_tape":
        for x0, y0, x1, y1, horizontal in bars:
            n = int(rng.integers(2, 6))
            length = (x1 - x0) if horizontal else (y1 - y0)
            for _ in range(n):
                colour = np.array(TAPE_COLOURS[int(rng.integers(len(TAPE_COLOURS)))], np.float32)
                start, size = rng.uniform(0.1, 0.8) * length, rng.uniform(0.06, 0.14) * length
                if horizontal:
                    block(x0 + start, y0, x0 + start + size, y1, colour)
                else:
                    block(x0, y0 + start, x1, y0 + start + size, colour)
        # ruler along the right bar, label card on the bottom bar
        x0, y0, x1, y1, _ = bars[3]
        block(
            x0 + 0.15 * b,
            y0 + 0.3 * sh,
            x1 - 0.15 * b,
            y0 + 0.75 * sh,
            np.array((150.0, 140.0, 215.0), np.float32),
        )
        for k in range(12):
            yk = y0 + 0.3 * sh + k * 0.45 * sh / 12
            block(x0 + 0.2 * b, yk, x0 + 0.6 * b, yk + 1, np.array((30.0, 30.0, 60.0), np.float32))
        x0, y0, x1, y1, _ = bars[1]
        cx = x0 + rng.uniform(0.55, 0.8) * (x1 - x0)
        block(cx, y0 + 0.1 * b, cx + 0.25 * sw, y1 + 0.4 * b, np.array((235.0, 235.0, 228.0), np.float32))
        for k in range(8):  # "text": dark strokes on the card
            xk = cx + 0.02 * sw + k * 0.028 * sw
            block(
                xk, y0 + 0.35 * b, xk + 0.018 * sw, y0 + 0.75 * b, np.array((40.0, 60.0, 140.0), np.float32)
            )
    elif frame.style == "metal":
        sleeve = np.array((205.0, 208.0, 212.0), np.float32)
        for x0, y0, x1, y1, horizontal in bars:
            length = (x1 - x0) if horizontal else (y1 - y0)
            for f in (0.15, 0.38, 0.62, 0.85):
                size = 0.07 * length
                if horizontal:
                    block(
                        x0 + f * length - size / 2,
                        y0 - 0.15 * b,
                        x0 + f * length + size / 2,
                        y1 + 0.15 * b,
                        sleeve,
                    )
                else:
                    block(
                        x0 - 0.15 * b,
                        y0 + f * length - size / 2,
                        x1 + 0.15 * b,
                        y0 + f * length + size / 2,
                        sleeve,
                    )
            if not horizontal:  # graduated strip along the inner edge
                inner = x1 - 0.35 * b if x0 < ox else x0
                block(inner, y0 + b, inner + 0.35 * b, y1 - b, np.array((225.0, 222.0, 200.0), np.float32))
                for k in range(40):
                    yk = y0 + b + k * (y1 - y0 - 2 * b) / 40
                    block(inner, yk, inner + 0.35 * b, yk + 1, np.array((40.0, 40.0, 40.0), np.float32))
        if rng.random() < 0.7:  # coloured blocks and a camera mount on the top bar
            x0, y0, x1, y1, _ = bars[0]
            blue = np.array(TAPE_COLOURS[5], np.float32)
            for f in (0.2, 0.8):
                block(
                    x0 + (f - 0.06) * (x1 - x0), y0 - 0.5 * b, x0 + (f + 0.06) * (x1 - x0), y1 + 0.2 * b, blue
                )
            block(
                x0 + 0.46 * (x1 - x0),
                y0 - 0.8 * b,
                x0 + 0.54 * (x1 - x0),
                y1 + 0.1 * b,
                np.array((35.0, 35.0, 40.0), np.float32),
            )
    else:  # pvc: tape at the corners in a contrasting colour
        tape = np.array(TAPE_COLOURS[int(rng.integers(len(TAPE_COLOURS)))], np.float32)
        for cx, cy in ((ox, oy), (ox + sw, oy), (ox + sw, oy + sh), (ox, oy + sh)):
            m = b * 1.4
            for x0, y0, x1, y1, _h in bars:
                bx0, by0, bx1, by1 = max(x0, cx - m), max(y0, cy - m), min(x1, cx + m), min(y1, cy + m)
                if bx1 > bx0 and by1 > by0:
                    block(bx0, by0, bx1, by1, tape)
    return mask


def _paste(plane: np.ndarray, mask: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Put ``rgb`` (h, w, 3) where ``alpha`` (h, w) is set, its TL at plane pixel (x0, y0), clipped."""
    ph, pw = plane.shape[:2]
    h, w = alpha.shape
    px0, py0, px1, py1 = max(x0, 0), max(y0, 0), min(x0 + w, pw), min(y0 + h, ph)
    if px1 <= px0 or py1 <= py0:
        return
    a = alpha[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0]
    region = plane[py0:py1, px0:px1]
    region[a] = rgb[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0][a]
    mask[py0:py1, px0:px1] |= a


def _tube_widths(frame: FrameStyle, s: float) -> tuple[int, int]:
    """(strip, tube) widths in px of a tube frame on an interior whose shorter side is ``s`` px."""
    st = max(2, round(frame.strip * s))
    return st, max(2, round(frame.bar * s) - st)


def _cylinder(t: np.ndarray, centre: float) -> np.ndarray:
    """Brightness across a lit tube, ``t`` in 0..1 edge to edge: dark edges, a specular ridge."""
    return 0.45 + 0.35 * np.sin(np.pi * np.clip(t, 0, 1)) + 0.55 * np.exp(-(((t - centre) / 0.1) ** 2))


def tube_bar_patch(
    rng: np.random.Generator,
    frame: FrameStyle,
    length: int,
    s: float,
    top: bool,
    reef_rgb: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """One side of a tube frame drawn straight: (rgb (H, L, 3), alpha (H, L), inward, overrun).

    Rows run outward from ``inward`` rows inside the interior (row ``inward`` is the first row beyond
    the inner edge); columns along the side, ``overrun`` columns before the interior's corner. From the
    inner edge out: the graduated strip (1 cm ticks, longer every 5 and 10), the silver tube; over
    them silver tape sleeves (an orange band and a white cable tie in most) bulging a few pixels over
    the interior and well beyond the tube; on the ``top`` side blue tape blocks near both ends and the
    camera mount (a black housing and its screen) in the middle, reaching a little into the interior.

    ``reef_rgb`` (3,): the median colour of the reef along the side's inner edge. The strip is then
    drawn about as bright as that reef (its material's hue, the reef's grey level times U(0.85, 1.1)),
    as on the real rig, where the strip is within 12 grey levels of the reef inside it on all 7
    photos (docs/synthetic.md): the frame's inner edge is a change of texture there, not of brightness;
    the sleeves' dull silver tape a little brighter than that reef (1.4 to 1.8 times its grey level,
    plus 25).
    """
    st, tube = _tube_widths(frame, s)
    b = st + tube
    bulge = max(1, round(s * rng.uniform(0.001, 0.004)))
    cam_in = round(s * rng.uniform(0.008, 0.016))
    inward = max(bulge, cam_in) + 1
    out = b + round(0.13 * s)
    overrun = b
    n = length + 2 * overrun
    rgb = np.zeros((inward + out, n, 3), np.float32)
    alpha = np.zeros((inward + out, n), bool)
    grain = 0.92 + 0.16 * smooth_noise(rng, (inward + out, n), max(2, n // 12))
    # strip: a ruler, its ticks from the inner edge
    strip_rgb = np.array(STRIP_COLOURS[int(rng.choice(len(STRIP_COLOURS), p=STRIP_WEIGHTS))], np.float32)
    brightness = rng.uniform(0.85, 1.1)
    if reef_rgb is not None:  # the material's hue at the reef's grey level
        strip_rgb = strip_rgb * (float(np.mean(reef_rgb)) / float(strip_rgb.mean()))
    strip_rgb = strip_rgb * brightness
    rows = slice(inward, inward + st)
    rgb[rows] = strip_rgb
    alpha[rows] = True
    tick_rgb = np.array((35.0, 32.0, 30.0), np.float32) * rng.uniform(0.8, 1.4)
    cm = length / 100.0
    tick_w = max(1, round(cm * 0.25))
    for k in range(101):
        c = overrun + round(k * cm)
        reach = st * (0.75 if k % 10 == 0 else 0.5 if k % 5 == 0 else 0.3)
        rgb[inward : inward + max(1, round(reach)), c : c + tick_w] = tick_rgb
        if k % 10 == 5 and st >= 6:  # a number between the long ticks
            rgb[
                inward + round(0.45 * st) : inward + round(0.85 * st),
                c + 2 * tick_w : c + 2 * tick_w + max(2, round(1.5 * cm)),
            ] = tick_rgb
    # tube
    t = (np.arange(tube) + 0.5) / tube
    shade = _cylinder(t, rng.uniform(0.3, 0.6))[:, None, None]
    rgb[inward + st : inward + b] = np.array(frame.rgb, np.float32) * shade
    alpha[inward + st : inward + b] = True
    # sleeves of silver tape: 3 or 4 along the side, each 11..16 % of the side long, 6..10 % across
    k_sleeves = int(rng.integers(3, 5))
    centres = (np.arange(k_sleeves) + 0.5) / k_sleeves + rng.uniform(-0.06, 0.06, k_sleeves)
    for f in centres:
        size = s * rng.uniform(0.11, 0.16)
        c0 = int(overrun + f * length - size / 2)
        c1 = int(c0 + size)
        r0, r1 = inward - bulge, inward + max(b + 2, round(s * rng.uniform(0.06, 0.1)))
        c0, c1 = max(c0, 0), min(c1, n)
        if c1 <= c0:
            continue
        silver = np.array((200.0, 205.0, 210.0), np.float32)  # grey level 205
        shine = rng.uniform(0.85, 1.1)
        tape = silver * shine
        if reef_rgb is not None:  # dull silver: a little brighter than the reef around it
            tape = silver * (min(235.0, float(np.mean(reef_rgb)) * 1.6 * shine + 25.0) / 205.0)
        crinkle = 0.85 + 0.3 * smooth_noise(rng, (r1 - r0, c1 - c0), max(2, (c1 - c0) // 14))
        across = 0.85 + 0.2 * np.sin(np.pi * (np.arange(r1 - r0) + 0.5) / (r1 - r0))[:, None]
        rgb[r0:r1, c0:c1] = tape * (crinkle * across)[..., None]
        alpha[r0:r1, c0:c1] = True
        if rng.random() < 0.75:  # an orange band with a white cable tie
            mid, half = (c0 + c1) // 2, max(1, round((c1 - c0) * rng.uniform(0.08, 0.14)))
            rgb[r0:r1, mid - half : mid + half] = np.array((225.0, 130.0, 50.0)) * rng.uniform(0.8, 1.1)
            tie = max(1, round(s * 0.003))
            rgb[r0:r1, mid - tie // 2 : mid - tie // 2 + tie] = (235.0, 235.0, 228.0)
    if top and rng.random() < 0.85:  # blue tape blocks and the camera mount
        blue = np.array((35.0, 70.0, 215.0), np.float32) * rng.uniform(0.8, 1.1)
        for f in (rng.uniform(0.08, 0.16), rng.uniform(0.84, 0.92)):
            size = s * rng.uniform(0.14, 0.2)
            c0, c1 = (
                max(int(overrun + f * length - size / 2), 0),
                min(int(overrun + f * length + size / 2), n),
            )
            r0, r1 = inward - bulge, inward + b + round(s * rng.uniform(0.06, 0.1))
            across = 0.7 + 0.4 * np.sin(np.pi * (np.arange(r1 - r0) + 0.5) / (r1 - r0))[:, None, None]
            rgb[r0:r1, c0:c1] = blue * across
            alpha[r0:r1, c0:c1] = True
        half = round(s * rng.uniform(0.04, 0.055))
        mid = overrun + length // 2 + round(s * rng.uniform(-0.02, 0.02))
        r0, r1 = inward - cam_in, inward + b + round(s * rng.uniform(0.06, 0.1))
        rgb[r0:r1, mid - half : mid + half] = np.array((24.0, 24.0, 28.0), np.float32)
        alpha[r0:r1, mid - half : mid + half] = True
        sr0, sr1 = r0 + (r1 - r0) // 3, r1 - (r1 - r0) // 5
        rgb[sr0:sr1, mid - half * 2 // 3 : mid + half * 2 // 3] = (70.0, 95.0, 120.0)
    return np.clip(rgb * grain[..., None], 0, 255), alpha, inward, overrun


@dataclass(frozen=True)
class TubeLeg:
    """One leg of a tube frame in plane px: a rod from ``tip_xy`` (at the frame's corner joint)
    to ``end_xy`` (outward), ``thick`` px across; ``label`` px of printed white label from the tip
    (0: none); ``black``: (inward, outward) px along the axis from the inner corner of a black
    connector sleeve over the joint, or None; ``cap``: a white end cap; ``shade``: the leg's
    brightness as a share of the frame's silver (the legs are duller than the bars)."""

    tip_xy: tuple[float, float]
    end_xy: tuple[float, float]
    thick: float
    label: float
    black: tuple[float, float] | None
    cap: bool
    shade: float


def draw_tube_leg(
    rng: np.random.Generator, corner_xy: tuple[float, float], outward: tuple[int, int], s: float, first: bool
) -> TubeLeg:
    """A tube frame's leg at the inner corner ``corner_xy`` (plane px), pointing ``outward`` (dx, dy
    in {-1, 1}), for an interior whose shorter side is ``s`` px; ``first``: the TL corner.

    As on the real CoralSCoP rig (the 7 photos of ``real_quadrats/coralscop``, measured at their
    hand corners; docs/synthetic.md): each leg plugs into the joint at the quadrat's inner corner,
    its axis through that corner and its tip 0..10 px (0..0.4 of its width) outward of it, so the
    corner point itself lies at or under the leg's end; 27..30 px across on a 735 px side
    (3.7..4.1 %; drawn 3.3..5 %), at 37..60 degrees from the bars; a printed white label over its
    first 1..1.5 widths; on the TL corner a black connector sleeve, 1.5 leg widths across, from 0.8
    widths inside the corner to 2 outside, ending in a white cap. Version 5 started the legs beyond
    the bars' outer corner, under them, leaving the joint open.
    """
    dx, dy = outward
    thick = s * rng.uniform(0.033, 0.05)
    ang = np.deg2rad(rng.uniform(30.0, 62.0))
    axis = np.array([dx * np.cos(ang), dy * np.sin(ang)])
    normal = np.array([-axis[1], axis[0]])
    through = np.asarray(corner_xy, float) + normal * thick * rng.uniform(-0.15, 0.15)
    tip = through + axis * thick * rng.uniform(-0.1, 0.4)
    end = tip + axis * s * rng.uniform(0.5, 1.0)
    black = None
    if rng.random() < (0.7 if first else 0.15):
        black = (thick * rng.uniform(0.4, 1.0), thick * rng.uniform(1.5, 2.6))
    label = thick * rng.uniform(1.0, 1.8) if black is None and rng.random() < 0.8 else 0.0
    return TubeLeg(
        (float(tip[0]), float(tip[1])),
        (float(end[0]), float(end[1])),
        float(thick),
        float(label),
        black,
        bool(black is not None or rng.random() < 0.4),
        float(rng.uniform(0.5, 0.8)),
    )


def _pt(xy: np.ndarray) -> tuple[int, int]:
    """A plane point as OpenCV's integer pixel (x, y)."""
    return int(np.rint(xy[0])), int(np.rint(xy[1]))


def _paint_rod(
    plane: np.ndarray,
    mask: np.ndarray,
    a_xy: np.ndarray,
    b_xy: np.ndarray,
    thick: float,
    rgb: np.ndarray,
    ridge: float = 0.4,
) -> np.ndarray:
    """Paint a lit rod (a ``thick`` px wide band from ``a_xy`` to ``b_xy``, plane px, its ends cut
    square) into ``plane`` with a cylinder's shading across it; mark it in ``mask``; its pixels
    (H, W) bool."""
    a_xy, b_xy = np.asarray(a_xy, float), np.asarray(b_xy, float)
    axis = (b_xy - a_xy) / max(float(np.linalg.norm(b_xy - a_xy)), 1e-6)
    half = np.array([-axis[1], axis[0]]) * thick / 2
    quad = np.array([a_xy + half, b_xy + half, b_xy - half, a_xy - half])
    layer = np.zeros(mask.shape, np.uint8)
    cv2.fillPoly(layer, [np.round(quad * 16).astype(np.int32)], 1, cv2.LINE_AA, shift=4)
    m = layer.astype(bool)
    yy, xx = np.nonzero(m)
    across = ((xx + 0.5 - a_xy[0]) * -axis[1] + (yy + 0.5 - a_xy[1]) * axis[0]) / max(thick, 1.0) + 0.5
    plane[yy, xx] = np.asarray(rgb, np.float32) * _cylinder(across, ridge)[:, None]
    mask |= m
    return m


def paint_tube_leg(
    plane: np.ndarray,
    mask: np.ndarray,
    leg: TubeLeg,
    corner_xy: tuple[float, float],
    rgb: np.ndarray,
    rng: np.random.Generator,
) -> None:
    """Paint ``leg`` (its rod, printed label, black connector and white cap) over ``plane`` in place, in
    ``rgb`` (the leg's silver), marking it in ``mask``; ``corner_xy``: the inner corner the black
    connector is placed from; ``rng``: the print's and the label's draws."""
    tip, end = np.asarray(leg.tip_xy), np.asarray(leg.end_xy)
    axis = (end - tip) / np.linalg.norm(end - tip)
    _paint_rod(plane, mask, tip, end, leg.thick, rgb)
    if leg.label > 0:  # white label, black print along it
        a, b = tip, tip + axis * leg.label
        _paint_rod(plane, mask, a, b, leg.thick, np.array((238.0, 238.0, 232.0)) * rng.uniform(0.8, 1.0))
        ink = max(1, round(leg.thick * rng.uniform(0.08, 0.14)))
        for t0 in np.arange(0.1, 0.9, 0.05):  # lines of small print across the label
            p0, p1 = a + axis * leg.label * t0, a + axis * leg.label * (t0 + 0.025)
            off = np.array([-axis[1], axis[0]]) * leg.thick * rng.uniform(-0.3, 0.3)
            cv2.line(
                plane,
                _pt(p0 + off),
                _pt(p1 + off),
                (40.0, 40.0, 45.0),
                ink,
                cv2.LINE_AA,
            )
    cap_at = tip + axis * leg.thick * rng.uniform(3.0, 5.0)
    if leg.black is not None:
        inward, outward = leg.black
        corner = np.asarray(corner_xy, float)
        _paint_rod(
            plane,
            mask,
            corner - axis * inward,
            corner + axis * outward,
            leg.thick * 1.5,
            np.array((40.0, 40.0, 46.0)),
        )
        cap_at = corner + axis * (outward + leg.thick * 0.6)
    if leg.cap:
        layer = np.zeros(mask.shape, np.uint8)
        r = max(2, round(leg.thick * 0.6))
        cv2.circle(layer, _pt(cap_at), r, 1, -1, cv2.LINE_AA)
        m = layer.astype(bool)
        plane[m] = (228.0, 226.0, 218.0)
        mask |= m


def _inner_corners(to_plane: PlaneMap) -> list[tuple[float, float]]:
    """The interior's corners TL, TR, BR, BL in plane px."""
    (ox, oy), (sw, sh) = to_plane.offset, to_plane.interior_wh
    return [(ox, oy), (ox + sw, oy), (ox + sw, oy + sh), (ox, oy + sh)]


def tube_legs(frame: FrameStyle, to_plane: PlaneMap) -> list[TubeLeg]:
    """The four legs (TL, TR, BR, BL) of a tube frame in plane px, drawn from the frame's seed
    (:func:`draw_tube_leg`); :func:`draw_tube_frame` paints them."""
    rng = np.random.default_rng([frame.seed, 4])
    s = float(min(to_plane.interior_wh))
    outward = ((-1, -1), (1, -1), (1, 1), (-1, 1))
    return [
        draw_tube_leg(rng, corner, d, s, first=k == 0)
        for k, (corner, d) in enumerate(zip(_inner_corners(to_plane), outward, strict=True))
    ]


def draw_tube_frame(plane: np.ndarray, to_plane: PlaneMap, frame: FrameStyle) -> np.ndarray:
    """Draw a CoralSCoP-style metal tube frame into ``plane`` in place; its pixels' mask (H, W) bool.

    Each side is :func:`tube_bar_patch` turned into place (its inner edge on the quadrat's edge; the
    strip's inner edge is the corner truth, as in the real photos' ``corners.json``); over them, at
    each corner, a leg plugged into the corner joint (:func:`draw_tube_leg`: its end at the inner
    corner, running out diagonally, a printed label or a black connector over the joint), hiding
    the inner corner itself on most corners (as on the real rig).
    """
    rng = np.random.default_rng([frame.seed, 2])
    sw, sh = to_plane.interior_wh
    s = float(min(sw, sh))
    ox, oy = to_plane.offset
    ph, pw = plane.shape[:2]
    mask = np.zeros((ph, pw), bool)
    # the reef along each side's inner edge (a band of 1..4 % of the side inside), before any bar
    band, edge = max(2, round(0.03 * s)), max(1, round(0.01 * s))
    x0, y0, x1, y1 = int(ox), int(oy), int(ox + sw), int(oy + sh)
    reef_rgb = {
        side: np.median(region.reshape(-1, 3), axis=0)
        for side, region in (
            ("top", plane[y0 + edge : y0 + edge + band, x0:x1]),
            ("bottom", plane[y1 - edge - band : y1 - edge, x0:x1]),
            ("left", plane[y0:y1, x0 + edge : x0 + edge + band]),
            ("right", plane[y0:y1, x1 - edge - band : x1 - edge]),
        )
    }
    for side in ("top", "right", "bottom", "left"):
        length = sw if side in ("top", "bottom") else sh
        rgb, alpha, inward, overrun = tube_bar_patch(rng, frame, length, s, side == "top", reef_rgb[side])
        height = alpha.shape[0]
        if side == "top":  # rows outward = up
            _paste(plane, mask, rgb[::-1], alpha[::-1], ox - overrun, oy - height + inward)
        elif side == "bottom":
            _paste(plane, mask, rgb, alpha, ox - overrun, oy + sh - inward)
        elif side == "left":  # rows outward = left
            _paste(
                plane, mask, rgb[::-1].transpose(1, 0, 2), alpha[::-1].T, ox - height + inward, oy - overrun
            )
        else:
            _paste(plane, mask, rgb.transpose(1, 0, 2), alpha.T, ox + sw - inward, oy - overrun)
    paint_rng = np.random.default_rng([frame.seed, 5])
    for leg, corner in zip(tube_legs(frame, to_plane), _inner_corners(to_plane), strict=True):
        paint_tube_leg(plane, mask, leg, corner, np.array(frame.rgb, np.float32) * leg.shade, paint_rng)
    return mask


# ---------------------------------------------------------------- camera


SQUARE_SHARE = {"tube": 0.8}  # share of square photos per frame style; others: SQUARE_SHARE_OTHERS
SQUARE_SHARE_OTHERS = 0.25
MOUNTED_SHARE = 0.8  # tube frames photographed by a camera fixed to the frame's camera bar


def draw_photo_size(shot: Shot, raw_size: tuple[int, int], frame: FrameStyle) -> tuple[int, int]:
    """(width, height) of the shot's photo: ``raw_size``, or a square of its shorter side in
    :data:`SQUARE_SHARE` of the shots (the real CoralSCoP photos are square)."""
    rng = np.random.default_rng([shot.camera_seed, 3])
    share = SQUARE_SHARE.get(frame.style, SQUARE_SHARE_OTHERS)
    side = min(raw_size)
    return (side, side) if rng.random() < share else (int(raw_size[0]), int(raw_size[1]))


def draw_mounted(shot: Shot, frame: FrameStyle) -> bool:
    """Whether a camera fixed to the frame took the shot (:data:`MOUNTED_SHARE` of tube frames)."""
    return frame.style == "tube" and np.random.default_rng([shot.camera_seed, 4]).random() < MOUNTED_SHARE


def camera_homography(
    shot: Shot,
    raw_size: tuple[int, int],
    size_wh: tuple[int, int],
    roll_deg: float = 0.0,
    mounted: bool = False,
) -> np.ndarray:
    """Warped -> raw homography of a pinhole camera over the quadrat, tilted and rolled as a diver holds it.

    Tilt (pitch, yaw) ~ N(0, 7 deg) clipped to +-20 deg; roll ~ N(0, 8 deg) clipped to +-25 deg,
    plus ``roll_deg``; the quadrat's mean inner side is U(0.55, 0.95) of the photo's shorter
    side (the outer frame is then often partly outside the photo); the inner corners stay inside
    the photo (draws that put one outside are drawn again). ``mounted``: a camera fixed to the
    frame (the CoralSCoP rig): tilt N(0, 2.5 deg) clipped to +-8 deg, roll N(0, 3 deg) clipped to
    +-10 deg, mean inner side N(0.71, 0.035) clipped to 0.62..0.8 of the shorter side, aim N(0, 2 %).
    """
    rng = np.random.default_rng([shot.camera_seed, 1])
    w, h = raw_size
    sw, sh = size_wh
    tilt_sd, tilt_max, roll_sd, roll_max, aim_sd = (2.5, 8, 3, 10, 0.02) if mounted else (7, 20, 8, 25, 0.03)
    for _ in range(300):
        pitch, yaw = np.deg2rad(np.clip(rng.normal(0, tilt_sd, 2), -tilt_max, tilt_max))
        roll = np.deg2rad(np.clip(rng.normal(0, roll_sd), -roll_max, roll_max) + roll_deg)
        rx = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
        ry = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
        rz = np.array([[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]])
        rot = rz @ rx @ ry
        distance = max(sw, sh) * rng.uniform(0.9, 1.4)
        centre = np.array([sw / 2, sh / 2, 0.0]) + np.r_[rng.normal(0, 0.04, 2) * [sw, sh], 0]
        cam = centre - rot.T @ np.array([0.0, 0.0, distance])  # the camera looks at the centre
        h_plane = np.column_stack([rot[:, 0], rot[:, 1], -rot @ cam])  # plane (x, y, 1) -> camera
        inner = np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], float)
        f = 1.0
        k = np.diag([f, f, 1.0])
        pts = transform_points(inner, k @ h_plane)
        span = np.linalg.norm(pts - np.roll(pts, -1, axis=0), axis=1).mean()  # mean inner side
        fill = np.clip(rng.normal(0.71, 0.035), 0.62, 0.8) if mounted else rng.uniform(0.55, 0.95)
        f = fill * min(w, h) / span
        shift = np.array([w / 2, h / 2]) + rng.normal(0, aim_sd, 2) * [w, h]
        k = np.array([[f, 0, shift[0]], [0, f, shift[1]], [0, 0, 1.0]])
        hom = k @ h_plane
        hom = hom / hom[2, 2]
        corners = transform_points(inner, hom)
        try:
            check_quadrilateral(corners)
        except ValueError:
            continue
        if corners.min() < 2 or (corners[:, 0] > w - 2).any() or (corners[:, 1] > h - 2).any():
            continue
        # a point behind the camera would fold the plane: keep the whole plane in front
        return hom
    raise RuntimeError("could not place the quadrat inside the photo; use a larger --size")


# ---------------------------------------------------------------- light and water


def draw_optics(shot: Shot, raw_size: tuple[int, int]) -> dict:
    """The water and camera conditions of a shot (see the distributions table in docs/synthetic.md)."""
    rng = np.random.default_rng([shot.light_seed, 1])
    depth = float(rng.uniform(3, 25))
    # what is left of each channel after the water and the camera's white balance: red is lost
    # first, with depth
    red = float(np.clip(1.0 - depth * rng.uniform(0.015, 0.04), 0.35, 1.0))
    cast = np.array([red, rng.uniform(0.82, 0.94), rng.uniform(1.0, 1.15)])
    water = np.array([rng.uniform(20, 55), rng.uniform(90, 125), rng.uniform(140, 190)])
    if rng.random() < 0.3:  # green, turbid lagoon water
        water = np.array([rng.uniform(70, 110), rng.uniform(120, 150), rng.uniform(100, 130)])
    scale = min(raw_size) / 576.0
    blurry = rng.random() < 0.15
    return {
        "depth_m": depth,
        "cast": cast.astype(np.float32),
        "strobe": float(rng.uniform(0.5, 1.1) if rng.random() < 0.6 else 0.0),
        "water": water.astype(np.float32),
        "backscatter": float(np.clip(0.03 + depth * rng.uniform(0.002, 0.01), 0, 0.3)),
        "caustics": float(rng.uniform(0.1, 0.35) if depth < 10 and rng.random() < 0.6 else 0.0),
        "caustic_scale": float(rng.uniform(0.05, 0.12)),
        "vignette": float(rng.uniform(0.1, 0.5)),
        "defocus_px": float((rng.uniform(0.8, 2.0) if blurry else rng.uniform(0.0, 0.7)) * scale),
        "motion_px": float(rng.uniform(2, 6) * scale if rng.random() < 0.1 else 0.0),
        "motion_angle": float(rng.uniform(0, 180)),
        "exposure": float(rng.lognormal(0.3, 0.2)),
        "gamma": float(rng.uniform(0.8, 1.1)),
        "saturation": float(rng.uniform(0.95, 1.4)),
        "noise": float(rng.uniform(1.0, 5.0)),
        "jpeg_quality": int(rng.integers(60, 96)),
        "seed": int(rng.integers(0, 2**31)),
    }


def caustics(rng: np.random.Generator, shape_hw: tuple[int, int], scale: float) -> np.ndarray:
    """A caustic web in 0..1 (H, W): bright thin ridges of two crossing noise fields."""
    cells = max(2, int(1.0 / max(scale, 1e-3)))
    a = smooth_noise(rng, shape_hw, cells)
    b = smooth_noise(rng, shape_hw, int(cells * 1.3))
    ridge = np.exp(-((a - 0.5) ** 2) / 0.002) + np.exp(-((b - 0.5) ** 2) / 0.002)
    return cv2.GaussianBlur(ridge.astype(np.float32), (0, 0), 1.0).clip(0, 1)


def apply_optics(image: np.ndarray, optics: dict, noise: np.ndarray) -> np.ndarray:
    """The water and the camera on a photo (float32 RGB (H, W, 3), 0..255) -> uint8 RGB."""
    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    cast = optics["cast"][None, None, :]
    if optics["strobe"] > 0:  # a strobe restores the colours near the centre, the water's cast beyond
        far = np.clip(r2 / (2 * optics["strobe"] ** 2), 0, 1)[..., None]
        cast = 1.0 + (cast - 1.0) * (0.25 + 0.75 * far)
    img = image * cast
    # backscatter: more away from the strobe's centre and towards the top (farther water)
    haze = optics["backscatter"] * (0.7 + 0.3 * r2 / 2 + 0.2 * (1 - yy / h))
    img = img * (1 - haze[..., None]) + optics["water"][None, None, :] * haze[..., None]
    img *= (1.0 - optics["vignette"] * r2 / 2.0)[..., None]
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * optics["saturation"]
    if optics["defocus_px"] > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), optics["defocus_px"])
    if optics["motion_px"] > 0.5:
        n = int(np.ceil(optics["motion_px"])) * 2 + 1
        kernel = np.zeros((n, n), np.float32)
        kernel[n // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D((n / 2 - 0.5, n / 2 - 0.5), optics["motion_angle"], 1.0)
        kernel = cv2.warpAffine(kernel, rot, (n, n))
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    img = 255.0 * (np.clip(img * optics["exposure"], 0, None) / 255.0) ** optics["gamma"]
    img += noise
    return img.clip(0, 255).astype(np.uint8)


# ---------------------------------------------------------------- occluders


def draw_occluders(shot: Shot, raw_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fish, fins and the photographer's shadow in the photo: colour (H, W, 3), alpha and codes (H, W).

    Fish: 0..5 (40 % of shots none), fin: 10 % of shots, shadow: 15 % of shots. ``alpha`` blends the
    colour over the photo (the shadow darkens: its colour is black at part alpha); ``codes`` holds
    :data:`OCCLUDER_CODES` where an occluder covers at least half the pixel.
    """
    rng = np.random.default_rng([shot.occluder_seed, 1])
    w, h = raw_size
    s = min(w, h)
    colour = np.zeros((h, w, 3), np.float32)
    alpha = np.zeros((h, w), np.float32)
    codes = np.zeros((h, w), np.uint8)

    def put(layer: np.ndarray, rgb: np.ndarray, code: int, strength: float = 1.0) -> None:
        a = layer * strength
        colour[:] = colour * (1 - a[..., None]) + rgb * a[..., None]
        np.maximum(alpha, a, out=alpha)
        codes[layer > 0.5] = code

    if rng.random() < 0.15:  # photographer's shadow: a soft dark blob from one edge
        layer = np.zeros((h, w), np.float32)
        edge = int(rng.integers(4))
        cx, cy = [
            (rng.uniform(0, w), 0),
            (w, rng.uniform(0, h)),
            (rng.uniform(0, w), h),
            (0, rng.uniform(0, h)),
        ][edge]
        cv2.ellipse(
            layer,
            (int(cx), int(cy)),
            (int(s * rng.uniform(0.2, 0.4)), int(s * rng.uniform(0.3, 0.5))),
            float(rng.uniform(0, 180)),
            0,
            360,
            1.0,
            -1,
        )
        layer = cv2.GaussianBlur(layer, (0, 0), s * 0.04)
        put(layer, np.zeros(3, np.float32), OCCLUDER_CODES["shadow"], rng.uniform(0.3, 0.5))
    n_fish = 0 if rng.random() < 0.4 else int(rng.integers(1, 6))
    for _ in range(n_fish):
        layer = np.zeros((h, w), np.float32)
        length = s * rng.uniform(0.04, 0.14)
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        angle = rng.uniform(0, 360)
        cv2.ellipse(
            layer,
            (int(cx), int(cy)),
            (int(length / 2), max(2, int(length * rng.uniform(0.15, 0.3)))),
            angle,
            0,
            360,
            1.0,
            -1,
            cv2.LINE_AA,
        )
        a = np.deg2rad(angle)
        tail = np.array([cx - np.cos(a) * length * 0.5, cy - np.sin(a) * length * 0.5])
        fin_pts = np.array(
            [
                tail,
                tail + length * 0.25 * np.array([-np.cos(a - 0.5), -np.sin(a - 0.5)]),
                tail + length * 0.25 * np.array([-np.cos(a + 0.5), -np.sin(a + 0.5)]),
            ]
        )
        cv2.fillPoly(layer, [fin_pts.astype(np.int32)], 1.0, cv2.LINE_AA)
        rgb = np.array(
            [(230, 200, 40), (40, 80, 190), (220, 220, 215), (60, 60, 70), (200, 120, 60)][
                int(rng.integers(5))
            ],
            np.float32,
        )
        put(layer, rgb * rng.uniform(0.7, 1.1), OCCLUDER_CODES["fish"], 1.0)
    if rng.random() < 0.10:  # a diver's fin entering from a photo edge
        layer = np.zeros((h, w), np.float32)
        edge = int(rng.integers(4))
        base = [
            (rng.uniform(0.2, 0.8) * w, -0.05 * h),
            (1.05 * w, rng.uniform(0.2, 0.8) * h),
            (rng.uniform(0.2, 0.8) * w, 1.05 * h),
            (-0.05 * w, rng.uniform(0.2, 0.8) * h),
        ][edge]
        inward = np.array([(0, 1), (-1, 0), (0, -1), (1, 0)][edge], float)
        side = np.array([-inward[1], inward[0]])
        reach = s * rng.uniform(0.15, 0.35)
        half = s * rng.uniform(0.08, 0.14)
        b0 = np.array(base)
        pts = np.array(
            [
                b0 - side * half * 0.6,
                b0 + side * half * 0.6,
                b0 + inward * reach + side * half,
                b0 + inward * reach - side * half,
            ]
        )
        cv2.fillPoly(layer, [pts.astype(np.int32)], 1.0, cv2.LINE_AA)
        put(
            layer,
            np.array([(25, 25, 30), (30, 60, 140), (200, 200, 60)][int(rng.integers(3))], np.float32),
            OCCLUDER_CODES["fin"],
            1.0,
        )
    return colour, alpha, codes


# ---------------------------------------------------------------- EXIF


def to_stored(image: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels to store (H, W[, C]) so that a reader applying EXIF ``orientation`` shows ``image``.

    Orientation 3: the stored file is upside down; 6: a reader turns it 90 deg clockwise (so the
    stored pixels are the picture turned 90 deg counter-clockwise); 8: the other way.
    """
    if orientation == 1:
        return image
    if orientation == 3:
        return np.ascontiguousarray(image[::-1, ::-1])
    if orientation == 6:
        return np.ascontiguousarray(np.rot90(image, 1))
    if orientation == 8:
        return np.ascontiguousarray(np.rot90(image, -1))
    raise ValueError(f"EXIF orientation {orientation} is not drawn by the varied world (1, 3, 6, 8)")


def draw_exif_orientation(shot: Shot) -> int:
    """1 (as stored) in 85 % of the shots, else 3, 6 or 8 (fixed by ``shot.exif_orientation``)."""
    if shot.exif_orientation is not None:
        return int(shot.exif_orientation)
    rng = np.random.default_rng([shot.camera_seed, 2])
    return 1 if rng.random() < 0.85 else int(rng.choice([3, 6, 8]))


# ---------------------------------------------------------------- the whole photo


@dataclass
class VariedRender:
    """What :func:`render_varied` makes, in the displayed orientation."""

    raw: np.ndarray
    raw_clean: np.ndarray
    homography_warped_to_raw: np.ndarray
    corners_raw_xy: np.ndarray
    grid_warped_xy: np.ndarray | None
    parts: list[VisiblePart]
    colonies: list[Colony]
    string_mask_warped: np.ndarray  # bool (H, W)
    occluder_codes_raw: np.ndarray  # uint8 (H, W)
    frame: FrameStyle
    optics: dict
    exif_orientation: int
    string_width_px: float
    cover: float


def plane_map(h_warped_to_raw: np.ndarray, raw_size: tuple[int, int], size_wh: tuple[int, int]) -> PlaneMap:
    """Where the plane image puts the interior: its scale (the photo's pixels per warped pixel,
    x1.3, within 0.3..1) and the margins that make it cover the whole photo (up to 1.6 sides)."""
    sw, sh = size_wh
    w, h = raw_size
    corners = transform_points(np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], float), h_warped_to_raw)
    x, y = corners[:, 0], corners[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    k = float(np.clip(np.sqrt(area / (sw * sh)) * 1.3, 0.3, 1.0))
    iw, ih = max(8, round(sw * k)), max(8, round(sh * k))
    kx, ky = iw / sw, ih / sh
    photo = transform_points(
        np.array([[0, 0], [w, 0], [w, h], [0, h]], float), np.linalg.inv(h_warped_to_raw)
    )
    cap = 1.6 * max(sw, sh)
    lo = np.clip(-photo.min(axis=0), 0, cap) + 0.06 * max(sw, sh)  # the frame and its legs
    hi = np.clip(photo.max(axis=0) - [sw, sh], 0, cap) + 0.06 * max(sw, sh)
    ox, oy = int(np.ceil(lo[0] * kx)) + 2, int(np.ceil(lo[1] * ky)) + 2
    return PlaneMap((kx, ky), (ox, oy), (iw, ih)), (
        int(np.ceil(hi[0] * kx)) + 2,
        int(np.ceil(hi[1] * ky)) + 2,
    )


def render_varied(
    rng: np.random.Generator,
    raw_size: tuple[int, int],
    size_wh: tuple[int, int],
    genera: list[str],
    rows: int = 9,
    cols: int = 13,
    grid: bool = True,
    roll_deg: float = 0.0,
    colonies: list[Colony] | None = None,
    shot: Shot | int | None = None,
    interior: np.ndarray | None = None,
    no_frame_share: float = 0.0,
) -> VariedRender:
    """Render one photo of the varied world (see the module docstring).

    Args:
        rng: the quadrat's generator: the reef (substrate, colonies) and, unless ``shot`` is
            given, the shot's seeds. The shot's four seeds are drawn first whether or not a
            ``shot`` is given, so a fixed shot leaves the reef as it is.
        raw_size: (width, height) of the photo.
        size_wh: (width, height) of the warped interior.
        genera: labels of the colonies to place (ignored when ``colonies`` is given).
        rows: rows of grid intersections when the frame has a grid.
        cols: columns of grid intersections when the frame has a grid.
        grid: False: no strings at all, whatever the frame.
        roll_deg: camera roll added to the drawn one.
        colonies: paint these (warped pixels, in order: later ones cover earlier ones) instead
            of placing new ones; their ``seed`` fixes their look.
        shot: a :class:`Shot`, an int (the seed of a drawn shot) or None (drawn from ``rng``).
        interior: a painted interior (float32 RGB (H, W, 3), the warped frame) shown inside the
            frame instead of the painted colonies; ``colonies`` are then its truth.
        no_frame_share: share of the shots photographed without any frame (reef alone, frame
            "none"; 0: every photo has its frame), to calibrate "no frame" answers.

    The photo is ``raw_size``, or a square of its shorter side (see :func:`draw_photo_size`).
    """
    drawn = Shot.draw(rng)
    if isinstance(shot, int | np.integer):
        shot = Shot.draw(np.random.default_rng(int(shot)))
    shot = shot or drawn
    sw, sh = size_wh
    s = min(sw, sh)
    frame = draw_frame_style(shot if grid else replace(shot, strings="none"), no_frame_share)
    raw_size = draw_photo_size(shot, raw_size, frame)
    h_warped_to_raw = camera_homography(shot, raw_size, (sw, sh), roll_deg, draw_mounted(shot, frame))
    to_plane, (right, bottom) = plane_map(h_warped_to_raw, raw_size, (sw, sh))
    (ox, oy), (iw, ih) = to_plane.offset, to_plane.interior_wh
    plane_hw = (oy + ih + bottom, ox + iw + right)
    ps = min(iw, ih)

    # reef (warped pixels for truth, painted in the plane)
    reef_seed = int(rng.integers(0, 2**31))
    if colonies is None:
        colonies = place_varied_colonies(rng, (sw, sh), genera)
    else:
        colonies = [
            c
            if c.seed is not None
            else Colony(
                c.label,
                np.asarray(c.polygon_xy, float),
                list(c.holes_xy),
                int(rng.integers(0, 2**31)),
                c.form,
            )
            for c in colonies
        ]
    reef_rng = np.random.default_rng([reef_seed, 1])
    plane = substrate(reef_rng, plane_hw, float(ps))
    extent = (
        -ox / to_plane.scale[0],
        -oy / to_plane.scale[1],
        sw + right / to_plane.scale[0],
        sh + bottom / to_plane.scale[1],
    )
    parts = visible_parts(colonies, (sw, sh))
    coral_share = float(polygons_to_mask([p.polygon for p in parts], (sw, sh)).mean()) if parts else 0.0
    beyond = outside_colonies(reef_rng, (sw, sh), extent, colonies, coral_share)
    paint_reef(plane, to_plane, colonies, parts, beyond)
    if interior is not None:
        interior = np.asarray(interior, np.float32)
        if interior.shape[:2] != (sh, sw):
            raise ValueError(
                f"interior must be {sh} x {sw} (H x W) for this quadrat, got {interior.shape[:2]}"
            )
        plane[oy : oy + ih, ox : ox + iw] = cv2.resize(interior, (iw, ih), interpolation=cv2.INTER_AREA)

    # light on the reef, then the frame and the strings
    light_rng = np.random.default_rng([shot.light_seed, 2])
    optics = draw_optics(shot, raw_size)
    if optics["caustics"] > 0:
        plane *= (
            1.0
            + optics["caustics"] * caustics(light_rng, plane_hw, optics["caustic_scale"] * ps / max(plane_hw))
        )[..., None]
    clean_plane = plane.copy()
    frame_mask = draw_frame(plane, to_plane, frame)
    clean_plane[frame_mask] = plane[frame_mask]
    curves = string_curves(frame, (sw, sh), rows, cols)
    width_px = max(1.5, frame.string_width * s)  # warped pixels
    plane_curves = [to_plane(c) for c in curves]
    alpha = string_alpha(plane_curves, plane_hw, 0.0, max(1.0, width_px * to_plane.mean_scale))
    inside = np.zeros(plane_hw, np.float32)
    inside[max(oy - 1, 0) : oy + ih + 1, max(ox - 1, 0) : ox + iw + 1] = 1.0
    alpha *= inside
    if alpha.any():
        dx, dy = frame.shadow_offset[0] * ps, frame.shadow_offset[1] * ps
        shadow = cv2.warpAffine(alpha, np.float32([[1, 0, dx], [0, 1, dy]]), (plane_hw[1], plane_hw[0]))
        shadow = (
            cv2.GaussianBlur(shadow, (0, 0), max(0.8, width_px * to_plane.mean_scale * 0.6)) * ~frame_mask
        )
        plane *= (1.0 - 0.45 * shadow)[..., None]
        shade = 0.85 + 0.15 * smooth_noise(light_rng, plane_hw, 30)
        string_rgb = np.array(frame.string_rgb, np.float32) * shade[..., None]
        plane = plane * (1 - alpha[..., None]) + string_rgb * alpha[..., None]
    string_mask = string_alpha(curves, (sh, sw), 0.0, width_px)[:sh, :sw] >= 0.5

    h_plane_to_raw = h_warped_to_raw @ np.linalg.inv(
        np.array([[to_plane.scale[0], 0, ox], [0, to_plane.scale[1], oy], [0, 0, 1]], dtype=np.float64)
    )
    occ_colour, occ_alpha, occ_codes = draw_occluders(shot, raw_size)
    # coral overhanging the frame: a colony blob over a bar's outer edge, never over the interior
    orng = np.random.default_rng([shot.occluder_seed, 2])
    if orng.random() < 0.2 and frame.style != NO_FRAME:
        overhang = np.zeros(plane_hw, np.float32)
        side = int(orng.integers(4))
        t = orng.uniform(0.1, 0.9)
        b = frame.bar * ps
        cx, cy = [
            (ox + t * iw, oy - b),
            (ox + iw + b, oy + t * ih),
            (ox + t * iw, oy + ih + b),
            (ox - b, oy + t * ih),
        ][side]
        r = ps * orng.uniform(0.03, 0.07)
        cv2.ellipse(
            overhang, (int(cx), int(cy)), (int(r * 1.5), int(r)), float(orng.uniform(0, 180)), 0, 360, 1.0, -1
        )
        overhang *= 1.0 - inside
        over_rgb = (
            np.array([150, 120, 90], np.float32)
            * (0.7 + 0.5 * smooth_noise(orng, plane_hw, max(2, plane_hw[1] // 8)))[..., None]
        )
        plane = plane * (1 - overhang[..., None]) + over_rgb * overhang[..., None]
        clean_plane = clean_plane * (1 - overhang[..., None]) + over_rgb * overhang[..., None]
        overhang_raw = warp_image(overhang, h_plane_to_raw, raw_size) > 0.5
        occ_codes[overhang_raw & (occ_codes == 0)] = OCCLUDER_CODES["overhang"]

    # tape bulging over the interior hides a few pixels of reef: the occluder mask says which
    bulge = np.zeros(plane_hw, np.float32)
    bulge[oy : oy + ih, ox : ox + iw] = frame_mask[oy : oy + ih, ox : ox + iw]
    if bulge.any():
        bulge_raw = warp_image(bulge, h_plane_to_raw, raw_size) > 0.5
        occ_codes[bulge_raw & (occ_codes == 0)] = OCCLUDER_CODES["frame"]

    noise_rng = np.random.default_rng([optics["seed"], 1])
    noise = noise_rng.normal(0, optics["noise"], (raw_size[1], raw_size[0], 3)).astype(np.float32)

    def photograph(p: np.ndarray) -> np.ndarray:
        projected = warp_image(p, h_plane_to_raw, raw_size, border_value=(60, 80, 90))
        projected = projected * (1 - occ_alpha[..., None]) + occ_colour * occ_alpha[..., None]
        return apply_optics(projected, optics, noise)

    raw = photograph(plane)
    raw_clean = photograph(clean_plane) if alpha.any() else raw.copy()
    grid_xy = grid_crossings(frame, (sw, sh), rows, cols) if frame.strings == "grid" else None
    corners = transform_points(np.array([[0, 0], [sw, 0], [sw, sh], [0, sh]], float), h_warped_to_raw)
    return VariedRender(
        raw=raw,
        raw_clean=raw_clean,
        homography_warped_to_raw=h_warped_to_raw,
        corners_raw_xy=corners,
        grid_warped_xy=grid_xy,
        parts=parts,
        colonies=colonies,
        string_mask_warped=string_mask,
        occluder_codes_raw=occ_codes,
        frame=frame,
        optics=optics,
        exif_orientation=draw_exif_orientation(shot),
        string_width_px=float(width_px),
        cover=coral_share,
    )


def parts_mask(parts: list[VisiblePart], size_wh: tuple[int, int]) -> np.ndarray:
    """Coral pixels (H, W) bool of the visible parts (their polygons with holes)."""
    return polygons_to_mask([p.polygon for p in parts], size_wh)


__all__ = [
    "FRAMES",
    "NO_FRAME",
    "STRINGS",
    "Shot",
    "VariedRender",
    "draw_frame_style",
    "draw_photo_size",
    "grid_crossings",
    "render_varied",
    "to_stored",
]
