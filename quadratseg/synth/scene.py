"""One synthetic photo-quadrat with the ground truth of every stage.

Frames: the *warped* frame is the quadrat interior seen straight from above, ``warped_size``
pixels square, TL corner at (0, 0); the *raw* frame is the photo, ``raw_size=(width, height)``.
``homography_warped_to_raw`` maps warped pixels to raw pixels (pixel-corner convention, see
:mod:`quadratseg.warp`).

Rendering order: clean warped interior (seabed + corals) -> with grid strings -> framed
canvas -> perspective into the photo over a seabed background -> the photo's degradations.
The clean photo is rendered with the same draws, so ``warped_clean`` differs from
``warped`` only where the grid is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from quadratseg.geometry import polygon_to_mask
from quadratseg.keypoints import corner_template_xy, grid_template_xy
from quadratseg.synth.appearance import (
    GENUS_LOOKS,
    colony_outline,
    degrade,
    draw_photo_conditions,
    paint_colony,
    seabed,
)
from quadratseg.synth.reef import Colony
from quadratseg.warp import check_quadrilateral, quadrat_homography, transform_points, warp_image
from quadratseg.warp import warped_size as warped_size_of

WORLDS = ("simple", "varied")

FRAME_RGB = (225.0, 222.0, 205.0)  # PVC frame
MARKER_RGB = (215.0, 40.0, 30.0)  # red tape on each corner
STRING_RGB = (238.0, 236.0, 212.0)  # grid string


@dataclass
class SyntheticQuadrat:
    """Images (uint8 RGB) and ground truth of one quadrat."""

    raw: np.ndarray
    warped: np.ndarray
    warped_clean: np.ndarray
    corners_raw_xy: np.ndarray  # (4, 2) TL, TR, BR, BL
    grid_raw_xy: np.ndarray | None  # (117, 2) row-major; None: the frame has no grid
    grid_warped_xy: np.ndarray | None  # (117, 2) row-major; None: the frame has no grid
    homography_warped_to_raw: np.ndarray  # (3, 3)
    colonies: list[Colony] = field(default_factory=list)
    grid_line_width_px: float = 0.0  # string width in the warped frame
    world: str = "simple"
    # varied world only: bool (H, W) strings in the warped frame, uint8 (H, W) occluder codes in the
    # raw frame (see quadratseg.synth.varied.OCCLUDER_CODES), EXIF orientation of the stored file,
    # and what the shot drew (frame, strings, depth, JPEG quality...)
    string_mask_warped: np.ndarray | None = None
    occluder_codes_raw: np.ndarray | None = None
    exif_orientation: int = 1
    shot_info: dict[str, Any] = field(default_factory=dict)

    @property
    def raw_size(self) -> tuple[int, int]:
        """(width, height) of the raw photo."""
        return self.raw.shape[1], self.raw.shape[0]

    @property
    def warped_size(self) -> tuple[int, int]:
        """(width, height) of the warped images."""
        return self.warped.shape[1], self.warped.shape[0]


def place_colonies(
    rng: np.random.Generator, warped_size: int | tuple[int, int], genera: list[str], max_tries: int = 60
) -> list[Colony]:
    """Place non-overlapping colonies of the given genera inside the quadrat (warped pixels).

    ``warped_size``: a side, or (width, height) of a rectangular quadrat. Colonies do not
    overlap, so every polygon is exactly the visible coral; a genus whose colony cannot be
    placed after ``max_tries`` is skipped.
    """
    sw, sh = (warped_size, warped_size) if isinstance(warped_size, int) else warped_size
    s = min(sw, sh)  # colony sizes scale with the shorter side
    occupied = np.zeros((sh, sw), dtype=bool)
    colonies: list[Colony] = []
    margin = 0.02 * s
    limit = np.array([sw, sh], dtype=np.float64)
    for label in genera:
        look = GENUS_LOOKS[label]
        for _ in range(max_tries):
            radius = look.size * s * rng.uniform(0.9, 1.6)
            centre = rng.uniform(margin + radius, limit - margin - radius, size=2)
            polygon = colony_outline(rng, (float(centre[0]), float(centre[1])), radius, look.lobes)
            if polygon.min() < margin or (polygon > limit - margin).any():
                continue
            # rasterize inside the colony's box only (a few px of margin for the spacing)
            x0, y0 = np.floor(polygon.min(axis=0)).astype(int) - 3
            x1, y1 = np.ceil(polygon.max(axis=0)).astype(int) + 3
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, sw), min(y1, sh)
            mask = polygon_to_mask(polygon - [x0, y0], (x1 - x0, y1 - y0))
            grown = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            if (grown & occupied[y0:y1, x0:x1]).any():
                continue
            occupied[y0:y1, x0:x1] |= mask
            colonies.append(Colony(label, polygon))
            break
    return colonies


def sample_camera_corners(
    rng: np.random.Generator,
    raw_size: tuple[int, int],
    frame_fraction: float,
    aspect: float = 1.0,
    roll_deg: float = 0.0,
) -> np.ndarray:
    """Raw-image positions (4, 2) of the quadrat's inner corners TL, TR, BR, BL under a tilted camera.

    ``aspect`` is the quadrat's width / height. The outer frame edge (``frame_fraction`` of the
    side beyond the interior) stays inside the photo. ``roll_deg`` turns the camera (the quadrat
    turns clockwise on the photo) on top of the random +-12 degrees; the corners stay the
    quadrat's own TL, TR, BR, BL.
    """
    w, h = raw_size
    shape = np.array([max(aspect, 1.0), max(1.0 / aspect, 1.0)])  # the longer side is 1
    for _ in range(200):
        side = rng.uniform(0.55, 0.72) * min(w / shape[0], h / shape[1])
        centre = np.array([w / 2, h / 2]) + rng.uniform(-0.06, 0.06, 2) * np.array([w, h])
        angle = np.deg2rad(rng.uniform(-12, 12) + roll_deg)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        square = (corner_template_xy() - 0.5) * side * shape
        corners = centre + square @ rot.T + rng.normal(0, 0.045 * side, (4, 2))
        try:
            check_quadrilateral(corners)
        except ValueError:
            continue
        outer = (corner_template_xy() - 0.5) * (1 + 2 * frame_fraction) + 0.5
        h_wr = np.linalg.inv(quadrat_homography(corners, (1, 1)))
        outer_raw = transform_points(outer, h_wr)
        if outer_raw.min() > 2 and (outer_raw[:, 0] < w - 2).all() and (outer_raw[:, 1] < h - 2).all():
            return corners
    raise RuntimeError("could not place the quadrat inside the photo; use a larger --size")


def _frame_canvas(interior: np.ndarray, band: int, rng: np.random.Generator) -> np.ndarray:
    """The interior (H, W, 3) surrounded by the frame bar (``band`` px) with red corner markers."""
    sh, sw = interior.shape[:2]
    canvas = np.empty((sh + 2 * band, sw + 2 * band, 3), dtype=np.float32)
    canvas[:] = FRAME_RGB
    canvas += rng.normal(0, 4, canvas.shape).astype(np.float32)
    canvas[band : band + sh, band : band + sw] = interior
    marker = int(band * 1.6)
    for cx, cy in ((band, band), (band + sw, band), (band + sw, band + sh), (band, band + sh)):
        x0, y0 = max(cx - marker, 0), max(cy - marker, 0)
        x1, y1 = min(cx + marker, canvas.shape[1]), min(cy + marker, canvas.shape[0])
        patch = canvas[y0:y1, x0:x1]
        # tape only on the frame bar, not over the interior
        yy, xx = np.mgrid[y0:y1, x0:x1]
        on_bar = (xx < band) | (xx >= band + sw) | (yy < band) | (yy >= band + sh)
        patch[on_bar] = MARKER_RGB
    return canvas


def draw_grid(image: np.ndarray, grid_xy: np.ndarray, width_px: float, rows: int, cols: int) -> np.ndarray:
    """Draw strings through the grid points (row-major (rows*cols, 2)) across the whole interior."""
    out = image.copy()
    sh, sw = image.shape[:2]
    pts = grid_xy.reshape(rows, cols, 2)
    thickness = max(1, round(width_px))
    shift = 4
    for j in range(cols):
        x = pts[0, j, 0]
        p0 = (round((x - 0.5) * 16), round(-0.5 * 16))
        p1 = (round((x - 0.5) * 16), round((sh - 0.5) * 16))
        cv2.line(out, p0, p1, STRING_RGB, thickness, cv2.LINE_AA, shift)
    for i in range(rows):
        y = pts[i, 0, 1]
        p0 = (round(-0.5 * 16), round((y - 0.5) * 16))
        p1 = (round((sw - 0.5) * 16), round((y - 0.5) * 16))
        cv2.line(out, p0, p1, STRING_RGB, thickness, cv2.LINE_AA, shift)
    return out


def render_quadrat(
    rng: np.random.Generator,
    raw_size: tuple[int, int],
    warped_size: int,
    genera: list[str],
    rows: int = 9,
    cols: int = 13,
    grid: bool = True,
    aspect: float = 1.0,
    roll_deg: float = 0.0,
    colonies: list[Colony] | None = None,
    world: str = "simple",
    shot: Any = None,
    interior: np.ndarray | None = None,
    no_frame_share: float = 0.0,
) -> SyntheticQuadrat:
    """Render one quadrat: raw photo, warped photo, warped photo without grid, and all truth.

    Args:
        rng: the quadrat's own generator (seeded per image for reproducibility).
        raw_size: (width, height) of the raw photo.
        warped_size: width of the warped images (their height is ``warped_size / aspect``).
        genera: finegrained labels of the colonies to place (some may not fit); unused when
            ``colonies`` is given.
        rows, cols: grid intersections (9 x 13 = 117 by default).
        grid: draw the strings; False renders a quadrat without a grid (two-stage surveys),
            whose grid truth is then where the strings would be (simple world) or none (varied).
        aspect: the quadrat's width / height (1: square; 2: a 1 x 0.5 m quadrat).
        roll_deg: the camera's roll added to the random one (see :func:`sample_camera_corners`).
        colonies: paint these colonies (warped pixels) as given, in order, instead of placing
            new ones (several renderings of one quadrat, e.g. over survey years). Simple world:
            their polygons are the truth as given (the caller keeps them apart); varied world:
            later ones cover earlier ones and the truth is each one's visible part.
        world: ``"simple"`` (pale frame, flat seabed, smooth blobs: fast unit tests) or
            ``"varied"`` (see :mod:`quadratseg.synth.varied`).
        shot: fixes the frame, camera and light draws: None draws them from ``rng``; an int
            seeds them; in the varied world also a :class:`quadratseg.synth.varied.Shot`. The
            same ``rng`` seed with another shot photographs the same quadrat again.
        interior: a painted interior (float32 RGB (H, W, 3) in 0..255, the warped frame) to
            photograph instead of painting one; ``colonies`` are then its truth as given.
        no_frame_share: varied world only: share of the photos with no frame at all (reef alone;
            the truth's ``frame`` is ``"none"`` and its corners say where the quadrat would be), to
            calibrate "no frame" answers; 0 (every photo framed) by default.
    """
    if world not in WORLDS:
        raise ValueError(f"world must be one of {WORLDS}, got {world!r}")
    if world == "varied":
        return _render_varied_quadrat(
            rng,
            raw_size,
            warped_size,
            genera,
            rows,
            cols,
            grid,
            aspect,
            roll_deg,
            colonies,
            shot,
            interior,
            no_frame_share,
        )
    if no_frame_share:
        raise ValueError(
            "no_frame_share is a draw of the varied world; the simple world always has its frame"
        )
    sw, sh = warped_size_of(warped_size, aspect)
    s = min(sw, sh)
    if interior is not None:
        interior = np.asarray(interior, np.float32).copy()
        if interior.shape[:2] != (sh, sw):
            raise ValueError(
                f"interior must be {sh} x {sw} (H x W) for this quadrat, got {interior.shape[:2]}"
            )
        colonies = list(colonies or [])
    else:
        interior = seabed(rng, (sh, sw))
        colonies = place_colonies(rng, (sw, sh), genera) if colonies is None else list(colonies)
        for colony in colonies:
            paint_colony(interior, colony.polygon_xy, GENUS_LOOKS[colony.label], rng)
    grid_warped = grid_template_xy(rows, cols) * [sw, sh]
    line_width = max(2.0, s / 220.0) * rng.uniform(0.8, 1.25)
    gridded = draw_grid(interior, grid_warped, line_width, rows, cols) if grid else interior

    if shot is not None and not isinstance(shot, int | np.integer):
        shot = int(shot.camera_seed)
    cam_rng = rng if shot is None else np.random.default_rng([int(shot), 5])
    frame_fraction = 0.045
    band = max(3, round(frame_fraction * s))
    corners_raw = sample_camera_corners(cam_rng, raw_size, frame_fraction, aspect, roll_deg)
    h_raw_to_warped = quadrat_homography(corners_raw, (sw, sh))
    h_warped_to_raw = np.linalg.inv(h_raw_to_warped)
    shift = np.array([[1, 0, -band], [0, 1, -band], [0, 0, 1]], dtype=np.float64)
    h_canvas_to_raw = h_warped_to_raw @ shift

    background = seabed(cam_rng, (raw_size[1], raw_size[0]), darker=0.85)
    conditions = draw_photo_conditions(cam_rng)
    noise = cam_rng.normal(0, float(conditions["noise"]), (raw_size[1], raw_size[0], 3)).astype(np.float32)
    canvas_rng_seed = int(cam_rng.integers(0, 2**31))
    alpha_src = np.ones((sh + 2 * band, sw + 2 * band), dtype=np.float32)
    alpha = warp_image(alpha_src, h_canvas_to_raw, raw_size)[..., None]

    def photograph(quadrat_interior: np.ndarray) -> np.ndarray:
        canvas = _frame_canvas(quadrat_interior, band, np.random.default_rng(canvas_rng_seed))
        projected = warp_image(canvas, h_canvas_to_raw, raw_size)
        return degrade(projected * alpha + background * (1 - alpha), conditions, noise)

    raw = photograph(gridded)
    raw_clean = photograph(interior)
    warped = warp_image(raw, h_raw_to_warped, (sw, sh))
    warped_clean = warp_image(raw_clean, h_raw_to_warped, (sw, sh))
    return SyntheticQuadrat(
        raw=raw,
        warped=warped,
        warped_clean=warped_clean,
        corners_raw_xy=corners_raw,
        grid_raw_xy=transform_points(grid_warped, h_warped_to_raw),
        grid_warped_xy=grid_warped,
        homography_warped_to_raw=h_warped_to_raw,
        colonies=colonies,
        grid_line_width_px=float(line_width),
    )


def _render_varied_quadrat(
    rng: np.random.Generator,
    raw_size: tuple[int, int],
    warped_size: int,
    genera: list[str],
    rows: int,
    cols: int,
    grid: bool,
    aspect: float,
    roll_deg: float,
    colonies: list[Colony] | None,
    shot: Any,
    interior: np.ndarray | None,
    no_frame_share: float = 0.0,
) -> SyntheticQuadrat:
    """:func:`render_quadrat` in the varied world (see :mod:`quadratseg.synth.varied`)."""
    from quadratseg.synth.varied import render_varied

    sw, sh = warped_size_of(warped_size, aspect)
    r = render_varied(
        rng, raw_size, (sw, sh), genera, rows, cols, grid, roll_deg, colonies, shot, interior, no_frame_share
    )
    h_raw_to_warped = np.linalg.inv(r.homography_warped_to_raw)
    parts = [
        Colony(
            p.label,
            p.polygon.exterior,
            list(p.polygon.holes),
            r.colonies[p.colony].seed,
            r.colonies[p.colony].form,
        )
        for p in r.parts
    ]
    grid_raw = (
        None if r.grid_warped_xy is None else transform_points(r.grid_warped_xy, r.homography_warped_to_raw)
    )
    info = {
        "frame": r.frame.style,
        "strings": r.frame.strings,
        "depth_m": round(r.optics["depth_m"], 2),
        "jpeg_quality": int(r.optics["jpeg_quality"]),
        "cover": round(r.cover, 4),
        "colony_of_part": [p.colony for p in r.parts],
    }
    return SyntheticQuadrat(
        raw=r.raw,
        warped=warp_image(r.raw, h_raw_to_warped, (sw, sh)),
        warped_clean=warp_image(r.raw_clean, h_raw_to_warped, (sw, sh)),
        corners_raw_xy=r.corners_raw_xy,
        grid_raw_xy=grid_raw,
        grid_warped_xy=r.grid_warped_xy,
        homography_warped_to_raw=r.homography_warped_to_raw,
        colonies=parts,
        grid_line_width_px=r.string_width_px,
        world="varied",
        string_mask_warped=r.string_mask_warped,
        occluder_codes_raw=r.occluder_codes_raw,
        exif_orientation=r.exif_orientation,
        shot_info=info,
    )
